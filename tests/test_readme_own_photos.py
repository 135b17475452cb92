"""The README's own-photos commands, run as written on the 24 sample photos.

The block under "Your own photos" is read from README.md, and each of its ``jtsm`` commands is
run in that order from a fresh working directory holding ``photos/`` and ``tags.csv`` as
``examples/sample_photos.py`` writes them. Only two things differ from a user's run: the
photos are shrunk (long side 160 px) and ``mine`` / ``refine`` get a few iterations through
``--set``, so the path, not the learning, is what this checks. The ImageNet weights come from a
torch hub cache in the test's own folder (a seeded random ResNet-18 in torchvision's file),
with the network blocked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner
from PIL import Image

from jtsm_cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
FEW = {"mine": ["solver.max_iter=3", "solver.steps=[2]", "solver.warmup_iters=1",
                "solver.log_period=1", "input.train_scales=[96]", "input.test_scales=[96]",
                "input.max_proposals=60"],
       "refine": ["solver.max_iter=2", "solver.steps=[1]", "solver.warmup_iters=1"]}


def readme_commands() -> list[list[str]]:
    """The ``jtsm`` commands of the README's own-photos bash block, as argument lists."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Your own photos"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(ln)[1:] for ln in lines if ln.strip().startswith("jtsm ")]


def _sample_photos(folder: Path, tags: Path) -> list[tuple[str, str]]:
    spec = importlib.util.spec_from_file_location("sample_photos",
                                                  ROOT / "examples/sample_photos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.write_sample(folder, tags)
    for name, _ in rows:  # shrink each file in its own format (EXIF and alpha kept)
        p = folder / name
        with Image.open(p) as im:
            exif = im.getexif()
            s = 160 / max(im.size)
            small = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))))
        if p.suffix == ".jpg":
            small.save(p, quality=92, exif=exif)
        else:
            small.save(p)
    return rows


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme_photos")
    hub = work / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), hub / "resnet18-f37072fd.pth")
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(work / "torch"))
    mp.setattr(torch.hub, "_hub_dir", None)
    mp.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(
        OSError("network blocked by the test")))
    old = Path.cwd()
    os.chdir(work)
    try:
        rows = _sample_photos(Path("photos"), Path("tags.csv"))
        outputs = []
        for args in readme_commands():
            extra = [w for kv in FEW.get(args[0], []) for w in ("--set", kv)]
            r = CliRunner().invoke(cli, [*args, *extra, "-q"] if args[0] in FEW else
                                   [*args, *extra])
            assert r.exit_code == 0, f"jtsm {shlex.join(args)}\n{r.output}"
            outputs.append((args, r.output))
        yield work, rows, outputs
    finally:
        os.chdir(old)
        mp.undo()


def test_the_block_is_the_whole_pipeline():
    commands = [a[0] for a in readme_commands()]
    assert commands == ["data", "proposals", "mine", "relabel", "refine", "predict"]
    mine, predict = readme_commands()[2], readme_commands()[-1]
    assert mine[mine.index("--config") + 1] == "photos_quick"
    assert "--proposals" in predict  # the store is reused, not computed again


def test_readme_block_runs_on_the_sample_photos(readme_run):
    work, rows, outputs = readme_run
    assert len(rows) >= 20
    pred = json.loads((work / "runs/pred/panoptic.json").read_text())
    assert sorted(im["file_name"] for im in pred["images"]) == sorted(n for n, _ in rows)
    png_of = {a["image_id"]: a["file_name"] for a in pred["annotations"]}
    for im in pred["images"]:  # sizes as a viewer shows each file (EXIF applied)
        with Image.open(work / "photos" / im["file_name"]) as f:
            w, h = f.size
            if f.getexif().get(0x0112) in (5, 6, 7, 8):
                w, h = h, w
        png = cv2.imread(str(work / "runs/pred/panoptic" / png_of[im["id"]]))
        assert png is not None and png.shape[:2] == (h, w) == (im["height"], im["width"])
    panels = sorted((work / "runs/pred/viz").glob("*.png"))
    assert len(panels) == 8
    labels = json.loads((work / "labels.json").read_text())
    names = {c["name"] for c in labels["categories"]}
    assert {"person", "cat", "sky", "grass", "motorcycle"} <= names
    stuff = {c["name"] for c in labels["categories"] if not c["isthing"]}
    assert stuff == {"sky", "grass"}
    # the run used the ImageNet weights named by the preset, read from the hub cache
    cfg = json.loads((work / "runs/mine/config.json").read_text())
    assert cfg["backbone"]["weights"] == "imagenet" and cfg["backbone"]["name"] == "resnet18-ws"
    first = torch.load(work / "runs/mine/model_final.pt", weights_only=True)
    cached = torch.load(work / "torch/hub/checkpoints/resnet18-f37072fd.pth", weights_only=True)
    key = next(k for k in first if k.endswith("layer4.1.conv2.weight"))
    assert torch.equal(first[key], cached["layer4.1.conv2.weight"])  # frozen: kept as loaded


def test_predict_again_is_a_no_op_and_rgba_reads_on_white(readme_run):
    work, _, outputs = readme_run
    args = outputs[-1][0]
    before = (work / "runs/pred/panoptic.json").stat().st_mtime_ns
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "already holds this job's predictions" in r.output
    assert (work / "runs/pred/panoptic.json").stat().st_mtime_ns == before
    from jtsm.fileio import read_image

    rgba = next((work / "photos").glob("cat_2.png"))
    with Image.open(rgba) as f:
        assert f.mode == "RGBA"
    assert np.array_equal(read_image(rgba), np.asarray(Image.open(rgba).convert("RGB")))
