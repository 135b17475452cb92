"""``from jtsm import Predictor``: a run as a function of one RGB array, same as jtsm predict."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jtsm.config import load_config
from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.engine.mine import run_mine
from jtsm.errors import DataError
from jtsm.fileio import read_image
from jtsm_cli.main import cli

TINY = ["solver.max_iter=4", "solver.ims_per_batch=2", "solver.warmup_iters=1",
        "solver.steps=[3]", "tag_warmup.iters=2", "tag_warmup.batch=2", "tag_warmup.items=2",
        "mining.fc_dim=32", "mining.oicr_heads=2", "input.train_scales=[64]",
        "input.test_scales=[64]", "input.max_proposals=100", "proposals=felzenszwalb"]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "predictor_example.py"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, synth_dir, synth_proposals):
    out = tmp_path_factory.mktemp("predictor_run")
    run_mine(load_config(overrides=TINY), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, out, write_outputs=False)
    return out


def test_predictor_equals_jtsm_predict(tmp_path, tiny_run, synth_dir):
    from jtsm import Predictor

    images = tmp_path / "imgs"
    images.mkdir()
    shutil.copy(synth_dir / "images" / "val_000001.jpg", images / "a.jpg")
    r = CliRunner().invoke(cli, ["predict", "--run", str(tiny_run), "--images", str(images),
                                 "--out", str(tmp_path / "pred"), "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    ds = load_panoptic_json(tmp_path / "pred" / "panoptic.json")
    want = ds.read(ds.images[0]["id"])
    predictor = Predictor(tiny_run, device="cpu")
    got = predictor(read_image(images / "a.jpg"))
    assert np.array_equal(got.panoptic.ids, want.ids)
    assert [s["category_id"] for s in got.panoptic.segments] == \
        [s["category_id"] for s in want.segments]
    things = {c["id"] for c in predictor.categories.categories if c.get("isthing", 1)}
    assert len(got.instances) == sum(s["category_id"] in things for s in want.segments)
    for inst in got.instances:
        assert inst["mask"].shape == want.ids.shape and inst["mask"].any()
        assert inst["name"] == got.name(inst["category_id"])
    dets = json.loads((tmp_path / "pred" / "detections.json").read_text())
    assert len(got.detections) == len(dets)
    with pytest.raises(DataError, match=r"expected an RGB image of shape \(H, W, 3\)"):
        predictor(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(DataError, match="dtype float64"):
        predictor(np.zeros((8, 8, 3)))


def test_from_model_equals_the_run_it_was_loaded_from(tiny_run, synth_dir):
    """A model in memory (here the run's own, loaded by hand) predicts as its run folder."""
    from jtsm import Predictor
    from jtsm.engine.runs import load_run

    run = load_run(tiny_run)
    image = read_image(synth_dir / "images" / "val_000002.jpg")
    want = Predictor(tiny_run, device="cpu")(image)
    got = Predictor.from_model(run.model, run.categories, run.config, run.presence)(image)
    assert np.array_equal(got.panoptic.ids, want.panoptic.ids)
    assert got.detections == want.detections
    assert [i["score"] for i in got.instances] == [i["score"] for i in want.instances]
    # without the calibrated thresholds, segments.presence_threshold decides which classes
    plain = Predictor.from_model(run.model, run.categories, run.config)(image)
    assert plain.panoptic.ids.shape == image.shape[:2]


def test_the_example_runs(tmp_path, tiny_run, synth_dir):
    panel = tmp_path / "panel.png"
    r = subprocess.run([sys.executable, str(EXAMPLE), str(tiny_run),
                        str(synth_dir / "images" / "val_000000.jpg"), "--out", str(panel),
                        "--device", "cpu"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "val_000000.jpg: 112x96 px" in r.stdout and "panel ->" in r.stdout
    assert panel.is_file() and json.loads(panel.with_suffix(".json").read_text())["titles"]
