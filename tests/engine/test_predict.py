import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from jtsm.config import load_config
from jtsm.engine.mine import run_mine
from jtsm.engine.runs import load_run
from jtsm.errors import DataError
from jtsm_cli.main import cli

sys.path.insert(0, str(Path(__file__).parent))
from eval_check import assert_eval_matches_references  # noqa: E402

TINY = ["solver.max_iter=4", "solver.ims_per_batch=2", "solver.warmup_iters=1",
        "solver.steps=[3]", "mining.fc_dim=32", "mining.oicr_heads=2",
        "input.train_scales=[64]", "input.test_scales=[64,80]", "input.max_proposals=100",
        "proposals=felzenszwalb"]


@pytest.fixture(scope="module")
def mine_run(tmp_path_factory, synth_dir, synth_proposals):
    out = tmp_path_factory.mktemp("mine_run")
    run_mine(load_config(overrides=TINY), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, out, write_outputs=False)
    return out


def test_predict_outputs_pass_jtsm_eval_and_panopticapi(tmp_path, mine_run, synth_dir,
                                                        synth_proposals):
    gt = synth_dir / "annotations/panoptic_val.json"
    out = tmp_path / "pred"
    r = CliRunner().invoke(cli, ["predict", "--run", str(mine_run), "--images",
                                 str(synth_dir / "images"), "--dataset", str(gt),
                                 "--proposals", str(synth_proposals), "--out", str(out),
                                 "--json", "--tta"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["images"] == 6
    for name in ("panoptic.json", "instances.json", "detections.json"):
        assert (out / name).is_file()
    assert_eval_matches_references(gt, out)


def test_predict_computes_proposals_on_the_fly(tmp_path, mine_run, synth_dir):
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("val_000000.jpg", "val_000001.jpg"):
        shutil.copy(synth_dir / "images" / name, images / name)
    r = CliRunner().invoke(cli, ["predict", "--run", str(mine_run), "--images", str(images),
                                 "--out", str(tmp_path / "pred"), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "pred/panoptic.json").read_text())
    assert [im["file_name"] for im in d["images"]] == ["val_000000.jpg", "val_000001.jpg"]


def test_bad_runs_are_named(tmp_path, mine_run):
    bad = tmp_path / "run"
    shutil.copytree(mine_run, bad)
    sd = torch.load(bad / "model_final.pt", weights_only=True)
    sd.pop(next(iter(sd)))
    torch.save(sd, bad / "model_final.pt")
    with pytest.raises(DataError, match="model_final.pt: weights do not fit"):
        load_run(bad)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, bad / "model_final.pt")
    with pytest.raises(DataError, match="refused: not a weights-only checkpoint"):
        load_run(bad)
    with pytest.raises(DataError, match="not a run folder"):
        load_run(tmp_path / "nope")
