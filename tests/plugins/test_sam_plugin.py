"""The third-party plugin package ``examples/jtsm-sam-plugin``: SAM's masks as proposals.

The model is a small SAM (a 2-block ViT of width 32 on 256 px, about 0.1M parameters) built
from a ``model_config`` JSON with random weights and saved as the checkpoint, so the whole path
of the product runs (JSON architecture -> checkpoint file -> SamAutomaticMaskGenerator ->
proposals -> store -> mining) in well under a second per image. Mask quality is meaningless
with random weights; what is checked is that SAM's output arrives exactly. The package is
installed into the test environment by ``make install``; without it these tests fail.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from jtsm_sam.generate import (
    SamOptions,
    generate,
    mask_records,
    record_scores,
    union_proposals,
)
from jtsm_sam.model import PUBLISHED, build_sam, read_model_config

from jtsm import plugins
from jtsm.errors import ConfigError
from jtsm.fileio import read_image
from jtsm.proposals.store import ProposalStore
from jtsm.structures import ProposalSet
from jtsm_cli.main import cli

TINY_ARCH = {
    "encoder_embed_dim": 32, "encoder_depth": 2, "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1], "image_size": 256, "window_size": 8,
    "prompt_embed_dim": 32, "mask_in_chans": 4, "decoder_mlp_dim": 64,
    "decoder_num_heads": 2, "iou_head_hidden_dim": 32,
}
#: 16 point prompts x 3 masks; random weights pass no quality threshold, so none is applied,
#: and their boxes overlap much, so box NMS is off too (SAM's own options, through --opt)
FEW_POINTS = {"points_per_side": 4, "pred_iou_thresh": 0, "stability_score_thresh": 0,
              "box_nms_thresh": 1.0}


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``--opt`` values of a random-weight tiny SAM: checkpoint file and its model_config."""
    root = tmp_path_factory.mktemp("tiny_sam")
    config = root / "tiny_sam.json"
    config.write_text(json.dumps(TINY_ARCH))
    torch.manual_seed(0)
    sam = build_sam(read_model_config(config))
    with torch.no_grad():  # wider than the default init, so masks differ between prompts
        for p in sam.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 3.0 / p.shape[-1] ** 0.5)
    checkpoint = root / "tiny_sam.pth"
    torch.save(sam.state_dict(), checkpoint)
    return {"checkpoint": str(checkpoint), "model_config": str(config)}


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """skimage's astronaut photo at 128 x 128 px, as ``astronaut.png``."""
    from skimage import data

    root = tmp_path_factory.mktemp("photo")
    im = cv2.resize(data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(root / "astronaut.png"), im[:, :, ::-1])
    return root


def _opt_args(options: dict[str, object]) -> list[str]:
    return [a for k, v in options.items() for a in ("--opt", f"{k}={v}")]


def _proposals(images: Path, out: Path, options: dict[str, object], *extra: str):
    args = ["proposals", "--images", str(images), "--out", str(out), "--method", "sam",
            "--workers", "1", "--quiet", *_opt_args(options), *extra]
    return CliRunner().invoke(cli, args)


def test_package_installed_and_listed():
    dist = metadata.distribution("jtsm-sam-plugin")
    eps = [ep for ep in dist.entry_points if ep.group == "jtsm"]
    assert [(ep.name, ep.value) for ep in eps] == [("sam", "jtsm_sam")]
    assert "segment-anything" in " ".join(dist.requires or [])
    r = CliRunner().invoke(cli, ["plugins", "--json"])
    assert r.exit_code == 0, r.output
    listed = {p["name"]: p for p in json.loads(r.output)}
    assert listed["sam"]["version"] == "0.1.0" and not listed["sam"]["builtin"]
    assert listed["sam"]["proposal_methods"] == ["sam"]
    gen = plugins.get_proposal_generator("sam")
    assert gen.plugin == "sam" and "NOT image-level labels only" in gen.description
    assert listed["sam"]["descriptions"] == {"sam": gen.description}
    r = CliRunner().invoke(cli, ["plugins"])  # the table, then what each method is
    assert r.exit_code == 0 and f"sam: {gen.description}" in r.output.splitlines()


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_architectures_are_segment_anythings(name):
    """build_sam(PUBLISHED[name]) has the tensors of segment-anything's own builder, so a
    model_config JSON can describe any of the released models (built on the meta device)."""
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ours = build_sam(PUBLISHED[name]).state_dict()
        theirs = sam_model_registry[name]().state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == \
        {k: tuple(v.shape) for k, v in theirs.items()}


def test_model_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**TINY_ARCH, "encoder_dept": 2}))
    with pytest.raises(ConfigError, match=r"model_config=.*bad.json: unknown field\(s\) "
                                          r"encoder_dept"):
        read_model_config(bad)
    bad.write_text(json.dumps({k: v for k, v in TINY_ARCH.items() if k != "encoder_depth"}))
    with pytest.raises(ConfigError, match="missing field"):
        read_model_config(bad)
    bad.write_text(json.dumps({**TINY_ARCH, "encoder_global_attn_indexes": [5]}))
    with pytest.raises(ConfigError, match="encoder_global_attn_indexes"):
        read_model_config(bad)


def test_end_to_end_on_a_photo_exact_through_the_store(tmp_path, tiny_sam, photo_dir):
    opts = {**tiny_sam, **FEW_POINTS, "device": "cpu"}
    r = _proposals(photo_dir, tmp_path / "props", opts, "--max", "12", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["computed"] == 1
    image = read_image(photo_dir / "astronaut.png")
    ps = ProposalStore(tmp_path / "props").load("astronaut.png", expect_size=(128, 128))
    assert isinstance(ps, ProposalSet) and ps.image_size == (128, 128)
    assert len(ps) == 12  # --max honoured (more than 12 distinct masks exist, below)

    # SAM's own records for the same pixels and options
    records = mask_records(image, SamOptions.parse(opts))
    ious = np.array([rec["predicted_iou"] for rec in records])
    stab = np.array([rec["stability_score"] for rec in records])
    masks = np.stack([rec["segmentation"] for rec in records])
    nonempty = masks.reshape(len(masks), -1).any(axis=1)
    assert nonempty.sum() > 12 and (ious[nonempty] > 1).any()  # the clip below matters
    expected = (np.clip(ious, 0, 1) * stab).astype(np.float32)
    assert np.array_equal(record_scores(records)[nonempty], expected[nonempty])

    stored = ps.masks()
    assert ps.scores.min() >= 0 and ps.scores.max() <= 1
    assert np.all(np.diff(ps.scores) <= 0)  # best first
    for i in range(len(ps)):
        same = [j for j in np.nonzero(nonempty)[0] if np.array_equal(masks[j], stored[i])]
        assert same, f"stored proposal {i} is no SAM mask"
        assert ps.scores[i] in {expected[j] for j in same}
    # the 12 kept are the 12 best of the distinct non-empty masks
    best = sorted({(float(expected[j]), masks[j].tobytes()) for j in np.nonzero(nonempty)[0]},
                  reverse=True)
    assert np.allclose(ps.scores, [s for s, _ in best[:12]])
    # the same call in the library gives the same proposals
    direct = generate(image, max_proposals=12, **opts)
    assert np.array_equal(direct.masks(), stored) and np.array_equal(direct.scores, ps.scores)


def test_device_option(tiny_sam, photo_dir):
    image = read_image(photo_dir / "astronaut.png")
    auto = generate(image, max_proposals=20, **tiny_sam, **FEW_POINTS)
    cpu = generate(image, max_proposals=20, **tiny_sam, **FEW_POINTS, device="cpu")
    assert len(cpu) > 0 and np.array_equal(auto.masks(), cpu.masks())
    if torch.cuda.is_available():
        gpu = generate(image, max_proposals=20, **tiny_sam, **FEW_POINTS, device="cuda")
        assert gpu.image_size == (128, 128) and len(gpu) > 0
    else:
        with pytest.raises(ConfigError, match="device=cuda: no CUDA device"):
            generate(image, **tiny_sam, **FEW_POINTS, device="cuda")
    with pytest.raises(ConfigError, match="device='tpu': expected cpu, cuda or cuda:N"):
        generate(image, **tiny_sam, **FEW_POINTS, device="tpu")


def _one_line_error(r, *parts: str) -> str:
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def test_missing_and_corrupt_checkpoints_are_one_line_errors(tmp_path, tiny_sam, photo_dir):
    cfg = {"model_config": tiny_sam["model_config"]}
    _one_line_error(_proposals(photo_dir, tmp_path / "a", {}),
                    "method 'sam' needs --opt checkpoint=PATH",
                    "https://github.com/facebookresearch/segment-anything#model-checkpoints")
    _one_line_error(_proposals(photo_dir, tmp_path / "b", {"checkpoint": tmp_path / "no.pth"}),
                    "no.pth: no such file")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(Path(tiny_sam["checkpoint"]).read_bytes()[:4000])
    _one_line_error(_proposals(photo_dir, tmp_path / "c", {"checkpoint": cut, **cfg}),
                    "cut.pth: not a readable SAM checkpoint")
    text = tmp_path / "text.pth"
    text.write_text("not weights\n")
    _one_line_error(_proposals(photo_dir, tmp_path / "d", {"checkpoint": text, **cfg}),
                    "text.pth: not a readable SAM checkpoint")
    # a good file for another architecture
    _one_line_error(_proposals(photo_dir, tmp_path / "e",
                               {"checkpoint": tiny_sam["checkpoint"], "model": "vit_b"}),
                    "does not fit model=vit_b")
    _one_line_error(_proposals(photo_dir, tmp_path / "f", {"checkpoint": tiny_sam["checkpoint"]}),
                    "width 32", "model_config")
    _one_line_error(_proposals(photo_dir, tmp_path / "g", {**tiny_sam, "points_per_sid": 4}),
                    "--opt points_per_sid: not an option of method 'sam'")


def test_union_keeps_every_mask_of_both(tiny_sam, photo_dir):
    image = read_image(photo_dir / "astronaut.png")
    sam = generate(image, max_proposals=60, **tiny_sam, **FEW_POINTS)
    ss = plugins.get_proposal_generator("selective-search").generate(image, mode="single")
    both = generate(image, max_proposals=60, **tiny_sam, **FEW_POINTS,
                    union="selective-search", **{"union.mode": "single"})
    assert 0 < len(sam) < 60 and len(both) == 60
    got = {m.tobytes() for m in both.masks()}
    assert {m.tobytes() for m in sam.masks()} <= got  # all SAM masks
    ss_best = ss.clean(60 - len(sam)).masks()
    assert sum(m.tobytes() in got for m in ss_best) == len(got) - len(sam)
    with pytest.raises(ConfigError, match="union.KEY given without --opt union"):
        generate(image, **tiny_sam, **{"union.mode": "single"})


def test_union_proposals_on_different_superpixel_maps():
    """Two sets on unrelated maps: every mask comes through the overlay exactly."""
    rng = np.random.default_rng(1)
    a = rng.random((3, 9, 11)) > 0.5
    b = rng.random((4, 9, 11)) > 0.6
    pa = ProposalSet.from_masks(a, np.array([0.9, 0.8, 0.7]))
    pb = ProposalSet.from_masks(b, np.array([0.4, 0.1, 0.3, 0.2]))
    u = union_proposals(pa, pb, max_proposals=5)
    assert len(u) == 5
    assert np.array_equal(u.masks(), np.concatenate([a, b[[0, 2]]]))
    assert np.allclose(u.scores, [0.9, 0.8, 0.7, 0.4, 0.3])
    assert np.array_equal(u.boxes, np.concatenate([pa.boxes, pb.boxes[[0, 2]]]))


def test_sam_proposals_then_mine(tmp_path, synth_dir, tiny_sam):
    train = synth_dir / "annotations/panoptic_train.json"
    props = tmp_path / "sam_props"
    r = _proposals(synth_dir / "images", props, {**tiny_sam, **FEW_POINTS},
                   "--dataset", str(train), "--max", "40", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["computed"] == 12
    tiny = ["solver.max_iter=3", "solver.ims_per_batch=2", "solver.checkpoint_period=3",
            "solver.warmup_iters=1", "solver.steps=[2]", "tag_warmup.iters=2", "tag_warmup.batch=2",
            "tag_warmup.items=2", "mining.fc_dim=32", "mining.oicr_heads=2",
            "input.train_scales=[64]", "input.test_scales=[64]", "input.max_proposals=40"]
    args = ["mine", "--dataset", str(train), "--images", str(synth_dir / "images"),
            "--proposals", str(props), "--out", str(tmp_path / "run"), "--json", "--quiet"]
    r = CliRunner().invoke(cli, args + [a for o in tiny for a in ("--set", o)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["images"] == 12
    assert (tmp_path / "run/mined/panoptic.json").is_file()
