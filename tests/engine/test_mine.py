import json
import subprocess
import sys

import torch
from click.testing import CliRunner

from jtsm.config import load_config
from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.engine.mine import run_mine
from jtsm.rundir.checkpoint import latest_checkpoint, load_checkpoint
from jtsm_cli.main import cli

TINY = ["solver.max_iter=6", "solver.ims_per_batch=2", "solver.checkpoint_period=3",
        "solver.log_period=1", "solver.warmup_iters=2", "solver.steps=[5]",
        "tag_warmup.iters=3", "tag_warmup.batch=2", "tag_warmup.items=2",
        "mining.fc_dim=32", "mining.oicr_heads=2", "input.train_scales=[64,80]",
        "input.test_scales=[80]", "input.max_proposals=100"]


def test_run_mine_writes_a_complete_run(tmp_path, synth_dir, synth_proposals):
    cfg = load_config(overrides=TINY)
    out = tmp_path / "run"
    summary = run_mine(cfg, synth_dir / "annotations/panoptic_train.json", synth_dir / "images",
                       synth_proposals, out)
    assert summary["images"] == 12 and summary["skipped_untagged"] == 0
    for name in ("config.json", "meta.json", "metrics.jsonl", "model_final.pt",
                 "checkpoints/last_warmup", "checkpoints/last_mine", "mined/panoptic.json",
                 "mined/detections.json"):
        assert (out / name).is_file(), name
    assert [p.name for p in out.glob("*.pt")] == ["model_final.pt"]  # one weights file
    stages = [json.loads(ln)["stage"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert stages.count("warmup") == 3 and stages.count("mine") == 6
    sd = load_checkpoint(out / "model_final.pt")
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    mined = load_panoptic_json(out / "mined/panoptic.json")
    assert len(mined.images) == 12
    for im in mined.images:
        seg = mined.read(im["id"])  # PNG and json agree
        assert seg.ids.shape == (im["height"], im["width"])
    dets = json.loads((out / "mined/detections.json").read_text())
    assert dets and {"image_id", "category_id", "bbox", "score"} <= set(dets[0])


def test_mine_command_and_resume(tmp_path, synth_dir, synth_proposals):
    args = ["mine", "--dataset", str(synth_dir / "annotations/panoptic_train.json"),
            "--images", str(synth_dir / "images"), "--proposals", str(synth_proposals),
            "--out", str(tmp_path / "run"), "--json", "--quiet"]
    for o in TINY:
        args += ["--set", o]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["images"] == 12
    first = load_checkpoint(tmp_path / "run/model_final.pt")
    r = CliRunner().invoke(cli, args + ["--resume"])  # finished stages are not retrained
    assert r.exit_code == 0, r.output
    again = load_checkpoint(tmp_path / "run/model_final.pt")
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_mine_bad_config_value_is_one_line(tmp_path, synth_dir, synth_proposals):
    r = CliRunner().invoke(cli, [
        "mine", "--dataset", str(synth_dir / "annotations/panoptic_train.json"),
        "--images", str(synth_dir / "images"), "--proposals", str(synth_proposals),
        "--out", str(tmp_path / "run"), "--set", "mining.pooling=avg"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "Error: config value mining.pooling='avg' is out of range "
        "(want moi, moi-tps, roi-pool or roi-align)"]


def test_mine_two_gloo_processes_equal_one(tmp_path, synth_dir, synth_proposals):
    """The real mining model as the CPU preset trains it (BatchNorm, tag warm-up, then frozen
    statistics for MIL): --nproc 2 and one process, same global batch, same weights and the
    same running statistics."""
    finals = []
    for n in (1, 2):
        out = tmp_path / f"run{n}"
        args = ["mine", "--dataset", str(synth_dir / "annotations/panoptic_train.json"),
                "--images", str(synth_dir / "images"), "--proposals", str(synth_proposals),
                "--out", str(out), "--nproc", str(n), "--quiet"]
        for o in TINY + ["backbone.norm=bn"]:
            args += ["--set", o]
        r = subprocess.run([sys.executable, "-m", "jtsm_cli", *args], capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        finals.append(load_checkpoint(out / "model_final.pt"))
    assert any(k.endswith("running_mean") for k in finals[0])
    for k in finals[0]:
        torch.testing.assert_close(finals[0][k], finals[1][k], rtol=1e-4, atol=1e-5)


def test_tag_warmup_loss_falls(tmp_path, synth_dir, synth_proposals):
    """A learning check within CI's budget: the tag loss of the warm-up stage goes down."""
    cfg = load_config(overrides=[
        "backbone.norm=bn", "tag_warmup.iters=80", "tag_warmup.batch=4", "tag_warmup.items=2",
        "tag_warmup.lr=0.002", "solver.max_iter=1", "solver.log_period=1",
        "input.train_scales=[64]", "input.test_scales=[64]", "mining.fc_dim=16"])
    run_mine(cfg, synth_dir / "annotations/panoptic_train.json", synth_dir / "images",
             synth_proposals, tmp_path / "run", write_outputs=False)
    recs = [json.loads(ln) for ln in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    losses = [r["loss_tags"] for r in recs if r["stage"] == "warmup"]
    assert len(losses) == 80
    assert sum(losses[-15:]) / 15 < 0.8 * sum(losses[:15]) / 15



def test_mil_with_a_frozen_backbone_trains_the_head_only(tmp_path, synth_dir, synth_proposals):
    """``mining.train_backbone=false``: MIL leaves the warm-up's backbone (weights and
    batch-norm statistics) as it was and still trains the mining head."""
    cfg = load_config(overrides=TINY + ["backbone.norm=bn", "mining.train_backbone=false"])
    out = tmp_path / "run"
    run_mine(cfg, synth_dir / "annotations/panoptic_train.json", synth_dir / "images",
             synth_proposals, out, write_outputs=False)
    # TagWarmupModule at its last iteration: backbone.* + classifier
    warm = load_checkpoint(latest_checkpoint(out, "warmup"))["model"]
    mid = load_checkpoint(out / "checkpoints/mine_0000003.pt")["model"]  # MIL at iteration 3
    final = load_checkpoint(out / "model_final.pt")
    backbone = [k for k in final if k.startswith("backbone.")]
    assert backbone and all(torch.equal(final[k], warm[k]) for k in backbone)
    head = [k for k in final if k.startswith("head.") and final[k].is_floating_point()]
    assert head and any(not torch.equal(final[k], mid["model." + k]) for k in head)


def test_mil_module_from_config_follows_the_preset():
    """``jtsm mine`` and benchmarks/probe_learning.py build the MIL stage the same way: the
    ``synth`` preset freezes the backbone and its BN statistics, the defaults train both."""
    from jtsm.engine.mine import MilTrainModule
    from jtsm.modeling.build import build_model
    from jtsm.structures import CategoryMap

    cats = CategoryMap.from_coco([{"id": 1, "name": "a", "isthing": 1}, {"id": 2, "name": "b",
                                                                 "isthing": 0}])
    for preset, frozen in (("synth", True), (None, False)):
        cfg = load_config(preset)
        m = MilTrainModule.from_config(build_model(cfg, cats), cfg)
        grads = {p.requires_grad for p in m.model.backbone.parameters()}
        assert grads == {not frozen}
        assert m.freeze_norm == (cfg.tag_warmup.iters > 0)


def test_a_workers_error_reaches_the_user_as_one_line(tmp_path, synth_dir, synth_proposals):
    """``--nproc 2``: a worker's config error is the command's one-line error (not
    ``ProcessRaisedException``), exit code 1."""
    args = ["mine", "--dataset", str(synth_dir / "annotations/panoptic_train.json"),
            "--images", str(synth_dir / "images"), "--proposals", str(synth_proposals),
            "--out", str(tmp_path / "run"), "--nproc", "2", "--quiet",
            "--set", "solver.ims_per_batch=1", "--set", "tag_warmup.iters=0"]
    r = subprocess.run([sys.executable, "-m", "jtsm_cli", *args], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "Error: config value solver.ims_per_batch=1 must be a multiple of the 2 workers"]


def test_a_run_started_from_a_finished_warmup_equals_the_whole_run(tmp_path, synth_dir,
                                                                   synth_proposals):
    """What benchmarks/ablate.py's shared warm-up relies on: ``warmup_from`` another run
    skips the warm-up (no warm-up iteration logged) and trains MIL to the same weights as the
    run it came from; the run's fingerprint names that run."""
    cfg = load_config(overrides=TINY + ["backbone.norm=bn"])
    args = (synth_dir / "annotations/panoptic_train.json", synth_dir / "images",
            synth_proposals)
    run_mine(cfg, *args, tmp_path / "a", write_outputs=False)
    run_mine(cfg, *args, tmp_path / "b", write_outputs=False, warmup_from=tmp_path / "a")
    meta = json.loads((tmp_path / "b/meta.json").read_text())
    assert meta["fingerprint"]["inputs"]["warmup_from"]["digest"] == json.loads(
        (tmp_path / "a/meta.json").read_text())["run_id"]
    stages = [json.loads(ln)["stage"]
              for ln in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    assert stages and "warmup" not in stages
    a = load_checkpoint(tmp_path / "a/model_final.pt")
    b = load_checkpoint(tmp_path / "b/model_final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_warmup_schedule_is_its_own_not_the_solvers():
    from jtsm.engine.mine import warmup_solver

    cfg = load_config(overrides=["tag_warmup.iters=100", "tag_warmup.lr=0.002", "solver.lr=0.5"])
    sol = warmup_solver(cfg)
    assert (sol.max_iter, sol.steps, sol.lr) == (100, [80], 0.002)
    assert sol.warmup_iters == 0  # not the solver's 50-iteration ramp


def test_whiten_stem_whitens_the_training_images_patches(synth_dir, synth_proposals):
    """``tag_warmup.whiten_images``: the stem's responses to the patches of those images (resized
    and normalised as the warm-up sees them) are decorrelated with unit variance."""
    from jtsm.data.labels import read_image_labels
    from jtsm.data.mining_dataset import MiningDataset
    from jtsm.engine.mine import whiten_stem
    from jtsm.modeling.build import build_model
    from jtsm.modeling.whitening import first_conv, sample_patches

    cfg = load_config(overrides=["backbone.norm=bn", "tag_warmup.whiten_images=5",
                                 "tag_warmup.whiten_eps=1e-6", "input.train_scales=[64]"])
    ds = MiningDataset(read_image_labels(synth_dir / "annotations/panoptic_train.json"),
                       synth_dir / "images", synth_proposals, cfg.input)
    model = build_model(cfg, ds.categories)
    before = first_conv(model.backbone).weight.detach().clone()
    whiten_stem(model, ds, cfg)
    conv = first_conv(model.backbone)
    assert not torch.equal(conv.weight, before)
    import cv2
    imgs = []
    for i in range(5):
        img = cv2.resize(ds.image(i), (75, 64), interpolation=cv2.INTER_LINEAR)  # 96x112 -> 64
        x = torch.from_numpy(img).permute(2, 0, 1).float()[None]
        imgs.append(((x - model.pixel_mean) / model.pixel_std)[0])
    patches = sample_patches(imgs, conv, 256, seed=cfg.seed).double()
    y = (patches - patches.mean(0)) @ conv.weight.detach().flatten(1).double().T
    k = conv.out_channels // 2
    assert torch.allclose(torch.cov(y[:, :k].T), torch.eye(k, dtype=torch.float64), atol=1e-3)


def test_run_mine_starts_the_warmup_from_the_whitened_stem(tmp_path, synth_dir, synth_proposals):
    """The config reaches the run: with a learning rate too small to move the weights, the
    warm-up's stem is the whitening whiten_stem computes; without the option, it is not."""
    from jtsm.data.labels import read_image_labels
    from jtsm.data.mining_dataset import MiningDataset
    from jtsm.engine.mine import whiten_stem
    from jtsm.modeling.build import build_model

    over = TINY + ["backbone.norm=bn", "tag_warmup.lr=1e-30", "solver.weight_decay=0"]
    stems = {}
    for name, extra in (("off", []), ("on", ["tag_warmup.whiten_images=4"])):
        cfg = load_config(overrides=over + extra)
        run_mine(cfg, synth_dir / "annotations/panoptic_train.json", synth_dir / "images",
                 synth_proposals, tmp_path / name, write_outputs=False)
        stems[name] = load_checkpoint(latest_checkpoint(tmp_path / name, "warmup"))["model"][
            "backbone.body.0.weight"]
    ds = MiningDataset(read_image_labels(synth_dir / "annotations/panoptic_train.json"),
                       synth_dir / "images", synth_proposals, cfg.input)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, ds.categories)
    whiten_stem(model, ds, cfg)
    expect = model.backbone.body[0].weight.detach()
    assert torch.allclose(stems["on"], expect, atol=1e-6)
    assert not torch.allclose(stems["off"], expect, atol=1e-3)


def test_few_images_per_class_from_scratch_gets_a_note():
    from types import SimpleNamespace

    from jtsm.config import load_config
    from jtsm.engine.mine import few_images_note
    from jtsm.structures import CategoryMap

    cats = CategoryMap.from_coco([{"id": 1, "name": "dog", "isthing": 1},
                                  {"id": 2, "name": "sky", "isthing": 0}])
    recs = [SimpleNamespace(labels=[1, 2]) for _ in range(20)] + [SimpleNamespace(labels=[2])]
    ds = type("DS", (), {"categories": cats, "records": recs, "__len__": lambda s: 21})()
    note = few_images_note(ds, load_config("synth", []))
    assert note is not None and "'dog') on 20" in note and "--config photos" in note
    assert few_images_note(ds, load_config("photos", [])) is None  # ImageNet features
    many = type("DS", (), {"categories": cats, "records": recs * 60,
                           "__len__": lambda s: 1260})()
    assert few_images_note(many, load_config("synth", [])) is None
