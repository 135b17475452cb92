"""The layers of docs/draw_architecture.py hold: every import goes to its own layer or one
below, nothing under data, proposals, modeling, ops, evaluation or rundir names the engine,
each run-folder file name is spelled in one module, and the architecture picture is current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _draw():
    spec = importlib.util.spec_from_file_location("draw_architecture",
                                                  ROOT / "docs/draw_architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_import_goes_to_its_layer_or_below():
    draw = _draw()
    assert draw.upward_imports() == []
    edges = {(src, pkg) for _, src, pkg in draw.imports()}
    assert ("engine", "rundir") in edges and ("proposals", "rundir") in edges  # the check sees


def test_lower_layers_never_name_the_engine():
    for part in ("data", "proposals", "modeling", "ops", "evaluation", "rundir"):
        for path in (ROOT / "jtsm" / part).rglob("*.py"):
            assert "jtsm.engine" not in path.read_text(), path


def test_each_run_folder_file_name_is_spelled_in_one_module():
    """The names of jtsm.rundir.layout appear as string literals nowhere else in the
    package (docstrings and comments may name them)."""
    from jtsm.rundir import layout

    names = [layout.CONFIG, layout.META, layout.FINAL_WEIGHTS, layout.METRICS, layout.LOG,
             layout.PRESENCE, layout.SUMMARY, layout.PANOPTIC_JSON, layout.DETECTIONS,
             layout.INSTANCES, f"{layout.STORE_INDEX}.json", '/ "mined"', '/ "tensorboard"']
    found = []
    for path in [*(ROOT / "jtsm").rglob("*.py"), *(ROOT / "jtsm_cli").rglob("*.py")]:
        if path.name == "layout.py" and path.parent.name == "rundir":
            continue
        code = "\n".join(line.split("#")[0] for line in path.read_text().splitlines()
                         if not line.strip().startswith(("``", "RUN", "STORE", "OUT")))
        for name in names:
            quoted = name if '"' in name else f'"{name}"'
            found += [f"{path.relative_to(ROOT)}: {quoted}"] * code.count(quoted)
    assert found == []


def test_the_architecture_picture_is_current():
    draw = _draw()
    assert (ROOT / "docs/img/architecture.svg").read_text() == draw.svg(), (
        "run python docs/draw_architecture.py")
