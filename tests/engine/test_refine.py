import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from jtsm.config import load_config
from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.refine_dataset import RefineDataset, pseudo_targets
from jtsm.engine.mine import run_mine
from jtsm.engine.refine import instance_targets, run_refine
from jtsm.engine.runs import load_run
from jtsm.errors import DataError
from jtsm_cli.main import cli

sys.path.insert(0, str(Path(__file__).parent))
from eval_check import assert_eval_matches_references  # noqa: E402

MINE = ["solver.max_iter=4", "solver.warmup_iters=1", "solver.steps=[3]", "mining.fc_dim=32",
        "mining.oicr_heads=2", "input.train_scales=[64]", "input.test_scales=[64]",
        "input.max_proposals=100", "proposals=felzenszwalb"]
REFINE = ["solver.max_iter=4", "solver.checkpoint_period=2", "refine.mask_channels=8",
          "refine.semantic_channels=8", "refine.mask_convs=1", "refine.mask_size=7"]


@pytest.fixture(scope="module")
def mine_run(tmp_path_factory, synth_dir, synth_proposals):
    out = tmp_path_factory.mktemp("mine_for_refine")
    run_mine(load_config(overrides=MINE), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, out)
    return out


def _state(path):
    return torch.load(path / "model_final.pt", weights_only=True)


def test_refine_then_predict_then_eval(tmp_path, mine_run, synth_dir, synth_proposals):
    out = tmp_path / "refine"
    r = CliRunner().invoke(cli, ["refine", "--run", str(mine_run), "--pseudo",
                                 str(mine_run / "mined/panoptic.json"), "--images",
                                 str(synth_dir / "images"), "--out", str(out), "--json",
                                 "--quiet", *sum((["--set", s] for s in REFINE), [])])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["images"] == 12
    assert json.loads((out / "meta.json").read_text())["stage"] == "refine"
    assert json.loads((out / "config.json").read_text())["refine"]["mask_channels"] == 8
    terms = {k for line in (out / "metrics.jsonl").read_text().splitlines()
             for k in json.loads(line)}
    assert {"loss_mil", "loss_refine_1", "loss_mask", "loss_semantic"} <= terms
    run = load_run(out)
    assert run.stage == "refine" and run.presence is not None
    gt = synth_dir / "annotations/panoptic_val.json"
    pred = tmp_path / "pred"
    r = CliRunner().invoke(cli, ["predict", "--run", str(out), "--images",
                                 str(synth_dir / "images"), "--dataset", str(gt),
                                 "--proposals", str(synth_proposals), "--out", str(pred),
                                 "--tta", "--json", "--viz", "2"])
    assert r.exit_code == 0, r.output
    from jtsm.fileio import read_image

    panels = sorted((pred / "viz").glob("*.png"))
    assert len(panels) == 2
    first = json.loads(gt.read_text())["images"][0]
    name = first["file_name"].rsplit(".", 1)[0]
    info = json.loads((pred / "viz" / f"{name}.json").read_text())
    assert info["titles"] == ["image", "prediction", "ground truth"]
    panel = read_image(pred / "viz" / f"{name}.png")
    # three parts side by side, each at least the image's size, under a title band
    assert panel.shape[1] >= 3 * first["width"] and panel.shape[0] > first["height"]
    assert_eval_matches_references(gt, pred)


def test_a_refined_run_segments_its_images_and_a_second_round_trains_on_them(
        tmp_path, mine_run, synth_dir, synth_proposals):
    """A self-training round: refine writes its own segments of the images it trained on
    (RUN2/mined/, as the refined model segments them with their tags), relabel reads them
    from the refined run, and refine trains again from the refined run on that."""
    from jtsm.engine.predict import predict_images
    from jtsm.engine.relabel import run_relabel

    images = synth_dir / "images"
    cfg = load_config(overrides=[*MINE, *REFINE])
    r1 = tmp_path / "round1"
    summary = run_refine(cfg, mine_run, mine_run / "mined/panoptic.json", images, r1)
    seg = load_panoptic_json(r1 / "mined/panoptic.json")
    train = load_panoptic_json(mine_run / "mined/panoptic.json")
    assert [im["id"] for im in seg.images] == [im["id"] for im in train.images]
    assert summary["segments"]["images"] == len(train.images)
    # the segments are the refined model's: what predict gives on the same images, with
    # the tags deciding the classes (a tagged image's classes are a subset of its tags)
    tags = {i: {s["category_id"] for s in a["segments_info"]}
            for i, a in train.annotations.items()}
    assert sum(len(a["segments_info"]) for a in seg.annotations.values()) > 0
    for i, a in seg.annotations.items():
        assert {s["category_id"] for s in a["segments_info"]} <= tags[i]
    pred = tmp_path / "pred"
    predict_images(load_run(r1), images, pred, synth_dir / "annotations/panoptic_train.json",
                   synth_proposals)
    assert (pred / "panoptic.json").is_file()
    relabelled = tmp_path / "relabel2"
    out = run_relabel(r1, images, relabelled, evidence="none", proposals=synth_proposals)
    assert out["complete"] and out["images"] == len(train.images)
    r2 = tmp_path / "round2"
    run_refine(cfg, r1, relabelled / "panoptic.json", images, r2)
    assert json.loads((r2 / "meta.json").read_text())["stage"] == "refine"
    assert (r2 / "mined/panoptic.json").is_file()
    a, b = _state(r1), _state(r2)
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("mask_head."))
    # or on the refined segments as they are: the pseudo labels may lie inside --run
    direct = tmp_path / "round2-direct"
    r = CliRunner().invoke(cli, ["refine", "--run", str(r1), "--pseudo",
                                 str(r1 / "mined/panoptic.json"), "--images", str(images),
                                 "--out", str(direct), "--quiet",
                                 *sum((["--set", s] for s in [*MINE, *REFINE]), [])])
    assert r.exit_code == 0, r.output
    assert (direct / "mined/panoptic.json").is_file()


def test_refine_resume_equals_an_uninterrupted_run(tmp_path, mine_run, synth_dir):
    def run(out, iters, resume):
        cfg = load_config(overrides=[*MINE, *REFINE, f"solver.max_iter={iters}"])
        run_refine(cfg, mine_run, synth_dir / "annotations/panoptic_train.json",
                   synth_dir / "images", out, resume=resume)

    run(tmp_path / "a", 4, False)
    run(tmp_path / "b", 2, False)
    run(tmp_path / "b", 4, True)
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_refine_trains_the_backbone_when_mining_train_backbone_is_false(tmp_path, mine_run,
                                                                       synth_dir):
    """``mining.train_backbone=false`` (the cpu preset) freezes the backbone in MIL only: a
    refine config that carries it (as the demo's refine config, built over the mining
    preset, does) still trains the backbone (Eq. 1 jointly with the new branches)."""
    frozen = ["mining.train_backbone=false"]
    cfg = load_config(overrides=[*MINE, *REFINE, *frozen])
    run_refine(cfg, mine_run, synth_dir / "annotations/panoptic_train.json",
               synth_dir / "images", tmp_path / "r")
    before, after = _state(mine_run), _state(tmp_path / "r")
    conv = [k for k in before if k.startswith("backbone.") and k.endswith("weight")
            and before[k].ndim == 4]
    assert conv and all(not torch.equal(before[k], after[k]) for k in conv)


def test_refine_keeps_the_backbone_with_refine_train_backbone_false(tmp_path, mine_run,
                                                                    synth_dir):
    """``refine.train_backbone=false``: stage 2 leaves the mining run's backbone as it was
    and still trains the new branches."""
    cfg = load_config(overrides=[*MINE, *REFINE, "refine.train_backbone=false"])
    run_refine(cfg, mine_run, synth_dir / "annotations/panoptic_train.json",
               synth_dir / "images", tmp_path / "r")
    before, after = _state(mine_run), _state(tmp_path / "r")
    backbone = [k for k in before if k.startswith("backbone.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)
    untrained = load_config(overrides=[*MINE, *REFINE, "refine.train_backbone=false",
                                       "solver.max_iter=0"])
    run_refine(untrained, mine_run, synth_dir / "annotations/panoptic_train.json",
               synth_dir / "images", tmp_path / "r0")
    init = _state(tmp_path / "r0")
    head = [k for k in after if k.startswith("mask_head.") and k.endswith("weight")]
    assert head and any(not torch.equal(after[k], init[k]) for k in head)


def test_refine_refuses_pseudo_labels_of_other_classes(tmp_path, mine_run, synth_dir):
    d = json.loads((synth_dir / "annotations/panoptic_train.json").read_text())
    d["categories"] = d["categories"][:-1]
    for ann in d["annotations"]:
        ann["segments_info"] = [s for s in ann["segments_info"]
                                if s["category_id"] != 9]
    bad = synth_dir / "annotations/other_classes.json"
    bad.write_text(json.dumps(d))
    try:
        with pytest.raises(DataError, match="other_classes.json: its categories"):
            run_refine(load_config(overrides=[*MINE, *REFINE]), mine_run, bad,
                       synth_dir / "images", tmp_path / "r")
    finally:
        bad.unlink()


def test_instance_targets_crop_each_box_from_its_own_instance(synth_dir, synth_proposals):
    cfg = load_config(overrides=[*MINE, "input.hsv_jitter=1.0", "input.hflip=false"])
    ds = RefineDataset(synth_dir / "annotations/panoptic_train.json", synth_dir / "images",
                       synth_proposals, cfg.input)
    item = ds.load(0, np.random.default_rng(0))
    boxes, classes, targets, weights = instance_targets(item, 64, 0.5, 28)
    n = item.thing_masks.shape[0]
    assert n > 0 and len(boxes) > n
    # the first n boxes are the instances' own boxes: their targets are the masks resampled
    for k in range(n):
        x0, y0, x1, y1 = boxes[k].int().tolist()
        crop = item.thing_masks[k, y0:y1, x0:x1].float()
        small = torch.nn.functional.interpolate(crop[None, None], size=(28, 28),
                                                mode="bilinear")[0, 0] >= 0.5
        assert (small == targets[k].bool()).float().mean() > 0.9
    assert torch.equal(classes[:n], item.thing_classes)
    assert torch.all(weights == 1)  # ground truth has no scores


def test_pseudo_targets_split_things_stuff_and_skip_crowd():
    from jtsm.structures import CategoryMap

    cats = CategoryMap.from_coco([{"id": 1, "name": "a", "isthing": 1},
                                  {"id": 2, "name": "b", "isthing": 1},
                                  {"id": 5, "name": "s", "isthing": 0}])
    ids = np.array([[1, 1, 2], [3, 3, 4]])
    segs = [{"id": 1, "category_id": 2, "score": 0.3}, {"id": 2, "category_id": 1},
            {"id": 3, "category_id": 5}, {"id": 4, "category_id": 1, "iscrowd": 1}]
    masks, classes, weights, stuff = pseudo_targets(ids, segs, cats)
    assert classes.tolist() == [1, 0] and weights.tolist() == pytest.approx([0.3, 1.0])
    assert masks[0].tolist() == [[True, True, False], [False, False, False]]
    assert stuff.tolist() == [[-1, -1, -1], [0, 0, -1]]


def _noisy_disc_dataset(root, n=16, size=64, seed=0):
    """Discs (a thing) on noisy ground under a bluish sky (two stuff classes).

    The true masks go to ``gt.json``; the pseudo labels (``pseudo.json``) are what a miner
    gets wrong differently on every image: each disc with a random box-shaped chunk of ground
    attached and a random bite taken out."""
    import cv2

    from jtsm.data.coco_panoptic import write_panoptic_dataset
    from jtsm.plugins import get_proposal_generator
    from jtsm.proposals.store import ProposalStore
    from jtsm.structures import PanopticSeg

    rng = np.random.default_rng(seed)
    cats = [{"id": 1, "name": "disc", "isthing": 1}, {"id": 2, "name": "ground", "isthing": 0},
            {"id": 3, "name": "sky", "isthing": 0}]
    (root / "images").mkdir(parents=True)
    store = ProposalStore(root / "props")
    gen = get_proposal_generator("felzenszwalb")
    yy, xx = np.mgrid[0:size, 0:size]
    images, gts, pseudos = [], [], []
    for i in range(n):
        img = rng.integers(20, 90, (size, size, 3)).astype(np.uint8)
        horizon = rng.integers(16, 48)
        sky = yy < horizon
        img[sky, 2] += 80  # a bluish sky over the ground
        cy, cx, r = rng.integers(20, 44), rng.integers(20, 44), rng.integers(9, 15)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[disc] = rng.integers(150, 255, 3)
        name = f"im{i:02d}.png"
        cv2.imwrite(str(root / "images" / name), img[..., ::-1])
        store.save(name, gen.generate(img))
        noisy = disc.copy()
        oy, ox = rng.integers(-r, r + 1, 2)
        chunk = (abs(yy - cy - oy) < r // 2 + 2) & (abs(xx - cx - ox) < r // 2 + 2)
        noisy |= chunk
        by, bx = rng.integers(-r, r + 1, 2)
        noisy &= ~((yy - cy - by) ** 2 + (xx - cx - bx) ** 2 < (r // 2) ** 2)
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        for masks, out in ((disc, gts), (noisy, pseudos)):
            ids = np.where(masks, 1, np.where(sky, 3, 2))
            out.append(PanopticSeg(ids, [{"id": 1, "category_id": 1, "score": 1.0},
                                         {"id": 2, "category_id": 2, "score": 1.0},
                                         {"id": 3, "category_id": 3, "score": 1.0}]))
    write_panoptic_dataset(root / "gt.json", images, cats, gts)
    write_panoptic_dataset(root / "pseudo.json", images, cats, pseudos)
    return root


def test_refine_learns_masks_that_beat_its_noisy_pseudo_labels(tmp_path):
    """Self-training averages out label noise: trained on pseudo masks that are wrong in a
    different way on every image, the instance branch's masks (in the pseudo boxes) overlap
    the true discs better than the pseudo masks do, and the losses fall."""
    from jtsm.engine.panoptic_inference import paste_mask
    from jtsm.fileio import read_image

    root = _noisy_disc_dataset(tmp_path / "data")
    mine = tmp_path / "mine"
    cfg = load_config(overrides=[*MINE, "input.train_scales=[64]", "input.max_proposals=50",
                                 "input.min_proposal_area=0"])
    run_mine(cfg, root / "gt.json", root / "images", root / "props", mine,
             write_outputs=False)
    cfg = load_config(overrides=[
        "solver.max_iter=200", "solver.lr=0.005", "solver.optimizer=adamw",
        "solver.warmup_iters=5", "solver.steps=[170]", "solver.checkpoint_period=1000",
        "refine.mask_channels=16", "refine.semantic_channels=16", "refine.mask_convs=2",
        "refine.mining_weight=0.1"], base=cfg)
    out = tmp_path / "refine"
    run_refine(cfg, mine, root / "pseudo.json", root / "images", out, proposals=root / "props")
    log = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for term in ("loss_mask", "loss_semantic"):
        v = [x[term] for x in log]
        assert np.mean(v[-3:]) < 0.8 * np.mean(v[:3]), term
    run = load_run(out)
    gt, pseudo = load_panoptic_json(root / "gt.json"), load_panoptic_json(root / "pseudo.json")
    iou_pseudo, iou_refined = [], []
    for im in gt.images:
        true = gt.read(im["id"]).ids == 1
        noisy = pseudo.read(im["id"])
        x, y, w, h = next(s["bbox"] for s in noisy.segments if s["category_id"] == 1)
        image = read_image(root / "images" / im["file_name"])
        with torch.no_grad():
            x_im = torch.from_numpy(image).permute(2, 0, 1)[None].float()
            prob = run.model.mask_logits(
                run.model.features(x_im), torch.tensor([[x, y, x + w, y + h]],
                                                       dtype=torch.float32), x_im).sigmoid()
        ref = paste_mask(prob[0, 0].numpy(), (x, y, x + w, y + h), true.shape)
        iou_pseudo.append((true & (noisy.ids == 1)).sum() / (true | (noisy.ids == 1)).sum())
        iou_refined.append((true & ref).sum() / (true | ref).sum())
    assert np.mean(iou_refined) > np.mean(iou_pseudo) + 0.05


def test_untrained_refine_predicting_from_mined_parts_equals_the_mining_run(
        tmp_path, mine_run, synth_dir, synth_proposals):
    """With 0 refine iterations and both parts taken from the mining branch
    (``refine.things_from=mined``, ``refine.stuff_from=mined``, the ablation's "no IS/SS"),
    a refine run predicts exactly what its mining run predicts."""
    from jtsm.engine.predict import predict_images

    cfg = load_config(overrides=[*MINE, *REFINE, "solver.max_iter=0",
                                 "refine.things_from=mined", "refine.stuff_from=mined"])
    run_refine(cfg, mine_run, synth_dir / "annotations/panoptic_train.json",
               synth_dir / "images", tmp_path / "r")
    gt = synth_dir / "annotations/panoptic_val.json"
    for name, run in (("a", mine_run), ("b", tmp_path / "r")):
        predict_images(load_run(run), synth_dir / "images", tmp_path / name, gt,
                       synth_proposals)
    a = load_panoptic_json(tmp_path / "a/panoptic.json")
    b = load_panoptic_json(tmp_path / "b/panoptic.json")
    assert a.raw["annotations"] == b.raw["annotations"]
    for im in a.images:
        assert np.array_equal(a.read(im["id"]).ids, b.read(im["id"]).ids)


def test_superpixel_means_equal_a_loop_and_snapping_follows_the_superpixels():
    """``refine.snap``: the vectorised per-superpixel mean equals a loop over superpixels; a
    blurred box mask snaps back onto the superpixels it mostly covers."""
    from jtsm.ops.superpixels import snap_to_superpixels, superpixel_means

    rng = np.random.default_rng(0)
    sp = rng.integers(0, 7, (12, 15))
    sp[0, 0] = 9  # ids need not be dense: 7 and 8 are unused
    maps = rng.random((3, 12, 15)).astype(np.float32)
    out = superpixel_means(maps, sp)
    assert out.shape == maps.shape and out.dtype == maps.dtype
    for c in range(3):
        for k in np.unique(sp):
            assert np.allclose(out[c][sp == k], maps[c][sp == k].mean(), atol=1e-6)
    # a square superpixel in the corner, a coarse probability map spilling out of it
    sp = np.zeros((20, 20), np.int64)
    sp[:10, :10] = 1
    prob = np.zeros((20, 20), np.float32)
    prob[:12, :12] = 0.8  # 2 px too big, as a 28x28 mask pasted into a box is
    snapped = snap_to_superpixels(prob, sp)
    assert np.array_equal(snapped, sp == 1)
    assert not snap_to_superpixels(prob * 0.5, sp).any()  # under the threshold: nothing

