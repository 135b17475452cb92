"""Case 3: ``mine --resume`` with a shape-changing ``--set`` rewrote ``config.json`` before the
checkpoint failed to load, so ``predict`` then failed on a run that used to work. Now the
config and the checkpoints are checked before anything is written."""

from __future__ import annotations

import shutil

from conftest import TINY, jtsm, tree

from jtsm.engine.runs import load_run


def test_resume_with_another_shape_leaves_the_run_working(tmp_path, rel_data, rel_run):
    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    before = tree(run)
    sets = [a for s in TINY + ["mining.fc_dim=32"] for a in ("--set", s)]
    code, text = jtsm("mine", "--dataset", rel_data / "annotations/panoptic_train.json",
                      "--images", rel_data / "images", "--proposals", rel_data / "props",
                      "--out", run, "--resume", "-q", *sets)
    assert code == 1, text
    assert "mining.fc_dim=16 vs 32" in text and "--overwrite" in text
    assert tree(run) == before  # config.json, meta.json, weights untouched
    load_run(run)  # predict can still load it


def test_resume_checks_checkpoint_shapes_before_writing(tmp_path, rel_data, rel_run):
    """A run whose config.json was edited by hand: the checkpoint no longer fits; the resume
    stops naming the checkpoint, before config.json is rewritten."""
    import json

    from jtsm.config import load_config
    from jtsm.engine.mine import run_mine  # noqa: F401 - the hook under test is prepare_run
    from jtsm.errors import DataError
    from jtsm.modeling.build import build_model
    from jtsm.rundir.fingerprint import check_resume_weights
    from jtsm.structures import CategoryMap

    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    cats = CategoryMap.from_coco(json.loads((run / "meta.json").read_text())["categories"])
    wide = load_config(overrides=TINY + ["mining.fc_dim=32"])
    try:
        check_resume_weights(run, ["mine"], lambda: build_model(wide, cats, "mine", "cpu")
                             .state_dict())
    except DataError as exc:
        assert "checkpoints" in str(exc)
        assert "does not fit this config" in str(exc)
    else:
        raise AssertionError("a checkpoint of fc_dim 16 passed for fc_dim 32")
