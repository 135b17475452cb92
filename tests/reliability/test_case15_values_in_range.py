"""Case 15: values out of range were accepted: ``segments.max_detections=-1`` (2004 detections an
image instead of at most 800), ``segments.max_instances=-2``, ``input.max_size=0``,
``solver.gamma=NaN``, negative weight decay and learning rates, NaN in any float; NaN
thresholds in ``presence.json`` (no instance predicted); NaN scores, NaN or negative box sizes
and garbage RLE counts in ``eval`` (AP 1.0 read as 0.81). Now every config key declares its
range (``jtsm.config.RANGES``) and every float must be finite; ``presence.json`` is checked on
load; ``eval`` refuses such records naming the record and the image."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import typing

import pytest
from conftest import jtsm

from jtsm.config import Config, load_config
from jtsm.errors import ConfigError


def _keys(cls: type = Config, prefix: str = "") -> dict[str, object]:
    """Every config key and its type."""
    hints = typing.get_type_hints(cls)
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_keys(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = hints[f.name]
    return out


def _one_line_error(code: int, text: str, *needles: str) -> None:
    lines = text.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_every_key_declares_its_range():
    from jtsm.config import FREE_TEXT, RANGES, choices

    keys = _keys()
    undeclared = ({k for k, tp in keys.items() if tp is not bool and not choices(k)}
                  - set(RANGES) - set(FREE_TEXT))
    assert not undeclared
    assert set(RANGES) <= set(keys)  # no check of a key that does not exist
    Config().validate()
    for preset in ("synth", "synth_quick", "photos", "voc", "coco", "synth_refine"):
        load_config(preset)  # the shipped presets are in range


def test_every_float_key_refuses_nan_and_inf():
    floats = [k for k, tp in _keys().items() if tp is float]
    assert len(floats) >= 20
    for key in floats:
        for bad in ("NaN", "Infinity", "-Infinity", "1e400"):
            with pytest.raises(ConfigError, match=rf"config value {key}=.*(finite|out of range)"):
                load_config(overrides=[f"{key}={bad}"])


@pytest.mark.parametrize("setting, want", [
    ("segments.max_detections=-1", "segments.max_detections=-1 is out of range (want >= 1)"),
    ("segments.max_instances=-2", "segments.max_instances=-2 is out of range (want >= 1)"),
    ("input.max_size=0", "input.max_size=0 is out of range (want >= 16)"),
    ("solver.gamma=NaN", "solver.gamma=nan is out of range (want a finite number)"),
    ("solver.weight_decay=-0.1", "solver.weight_decay=-0.1 is out of range (want >= 0)"),
    ("tag_warmup.lr=-0.001", "tag_warmup.lr=-0.001 is out of range (want > 0)"),
    ("solver.warmup_factor=0", "solver.warmup_factor=0.0 is out of range (want in (0, 1])"),
    ("segments.presence_threshold=1.5", "segments.presence_threshold=1.5 is out of range (want in "
                                     "[0, 1])"),
    ("mining.oicr_iou_threshold=-1", "mining.oicr_iou_threshold=-1.0 is out of range"),
    ("mining.stuff_seeds=0", "mining.stuff_seeds=0 is out of range"),
    ("solver.clip_grad_norm=-1", "solver.clip_grad_norm=-1.0 is out of range (want >= 0, 0 = "
                                 "off)"),
    ("tag_warmup.optimizer=rmsprop",
     "tag_warmup.optimizer='rmsprop' is out of range (want sgd or adamw)"),
    ("solver.steps=[100,-5]", "solver.steps=[100, -5] is out of range"),
    ("seed=-1", "seed=-1 is out of range"),
])
def test_out_of_range_values_are_refused_naming_the_key(setting, want):
    code, text = jtsm("config", "show", "--set", setting)
    _one_line_error(code, text, f"config value {want}")


def test_nan_presence_thresholds_are_refused(tmp_path, rel_data, rel_run):
    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    d = json.loads((run / "presence.json").read_text())
    d["thresholds"][1] = math.nan
    (run / "presence.json").write_text(json.dumps(d))  # json writes NaN
    code, text = jtsm("predict", "--run", run, "--images", rel_data / "images/val_000000.jpg",
                      "--out", tmp_path / "pred")
    _one_line_error(code, text, "presence.json: thresholds[1]", "is nan, not a number in [0, 1]")
    d["thresholds"][1] = 1.5
    (run / "presence.json").write_text(json.dumps(d))
    code, text = jtsm("predict", "--run", run, "--images", rel_data / "images/val_000000.jpg",
                      "--out", tmp_path / "pred")
    _one_line_error(code, text, "thresholds[1]", "is 1.5, not a number in [0, 1]")


@pytest.fixture()
def perfect(rel_data, tmp_path):
    """The val ground truth and results that are the ground truth itself (AP 1.0)."""
    from jtsm.data.coco_panoptic import load_panoptic_json
    from jtsm.structures import mask_to_rle

    gt = rel_data / "annotations/panoptic_val.json"
    ds = load_panoptic_json(gt)
    results = []
    for im in ds.images:
        seg = ds.read(im["id"]).with_stats()
        for s in seg.segments:
            if ds.categories.isthing(s["category_id"]):
                results.append({"image_id": im["id"], "category_id": s["category_id"],
                                "score": 1.0, "bbox": s["bbox"],
                                "segmentation": mask_to_rle(seg.ids == s["id"])})
    return gt, results


def _eval(tmp_path, gt, results, metric):
    path = tmp_path / f"res-{metric}.json"
    path.write_text(json.dumps(results))
    return jtsm("eval", "--metric", metric, "--gt", gt, "--pred", path, "--json")


@pytest.mark.parametrize("field, value, metric, want", [
    ("score", math.nan, "ap", "score nan is not a finite number"),
    ("score", math.inf, "map", "score inf is not a finite number"),
    ("bbox", [1.0, 2.0, math.nan, 4.0], "map", "needs finite numbers and a width and height > 0"),
    ("bbox", [1.0, 2.0, -3.0, 4.0], "ap", "needs finite numbers and a width and height > 0"),
    ("bbox", [1.0, 2.0, 3.0, 0.0], "corloc", "a width and height > 0"),
    ("counts", "garbage!", "ap", "undecodable RLE mask (counts hold a character outside"),
    ("counts", "0", "ap", "undecodable RLE mask (counts cover 0 pixels, a 64x72 mask has 4608)"),
    ("counts", [100, 5], "ap", "undecodable RLE mask (counts cover 105 pixels"),
])
def test_eval_refuses_bad_results_naming_the_image(tmp_path, perfect, field, value, metric,
                                                   want):
    gt, results = perfect
    code, text = _eval(tmp_path, gt, results, "ap")
    assert code == 0, text
    assert json.loads(text)["segm"]["AP"] == pytest.approx(1.0)
    bad = [dict(r) for r in results]
    if field == "counts":
        bad[2]["segmentation"] = {**bad[2]["segmentation"], "counts": value}
    else:
        bad[2][field] = value
    code, text = _eval(tmp_path, gt, bad, metric)
    _one_line_error(code, text, "[2] (image ", want)


def test_eval_takes_list_counts_that_describe_the_mask(tmp_path, perfect):
    """An uncompressed RLE (a list of counts) that is right scores as its compressed form."""
    from jtsm.evaluation.rle import decode_counts

    gt, results = perfect
    for r in results:
        r["segmentation"] = {**r["segmentation"],
                             "counts": decode_counts(r["segmentation"]["counts"]).tolist()}
    code, text = _eval(tmp_path, gt, results, "ap")
    assert code == 0, text
    assert json.loads(text)["segm"]["AP"] == pytest.approx(1.0)
