"""``jtsm demo``: the whole pipeline on the generated dataset, as far as it is built.

synth data -> selective-search proposals -> mine (tag warm-up + MIL) -> predict on the val split
-> PQ (and CorLoc of the mined training detections). Every stage writes its standard files
under ``OUT`` and is skipped when its output already exists, so a rerun after a kill goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jtsm.config import Config, load_config

__all__ = ["demo_config", "run_demo"]


def demo_config(quick: bool) -> Config:
    """The CPU preset the demo trains with (``quick``: a smoke-test budget for CI)."""
    from jtsm.presets import PRESETS

    return load_config(overrides=PRESETS["cpu-quick" if quick else "cpu"])


def run_demo(
    out: str | os.PathLike[str],
    quick: bool = False,
    say: Callable[[str], None] = print,
    progress: Callable[..., Any] | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every built stage; returns the PQ of the val predictions and stage timings."""
    from jtsm.data.synth import SynthConfig, write_synth_dataset
    from jtsm.engine.mine import run_mine
    from jtsm.engine.predict import predict_images
    from jtsm.engine.runs import load_run
    from jtsm.evaluation.detection import evaluate_corloc
    from jtsm.evaluation.panoptic import evaluate_pq
    from jtsm.proposals.runner import list_images, run_proposals

    out = Path(out)
    data, props, run_dir, pred = out / "data", out / "proposals", out / "mine", out / "val"
    n_train, n_val, size = (60, 20, 96) if quick else (1000, 100, 128)
    times: dict[str, float] = {}
    t = time.perf_counter()
    ann = data / "annotations"
    if not (ann / "panoptic_val.json").is_file():
        write_synth_dataset(data, n_train, n_val, SynthConfig(height=size, width=size), seed=0)
    times["data"] = time.perf_counter() - t
    say(f"data: {n_train} train + {n_val} val synthetic images -> {data}")
    t = time.perf_counter()
    for split in ("train", "val"):
        items = list_images(data / "images", ann / f"panoptic_{split}.json")
        results = run_proposals(items, props, method="selective-search", max_proposals=2000)
        if progress is not None:
            results = progress(results, len(items), f"proposals {split}")
        for _ in results:
            pass
    times["proposals"] = time.perf_counter() - t
    say(f"proposals: selective search -> {props} ({times['proposals']:.0f}s)")
    t = time.perf_counter()
    cfg = demo_config(quick)
    run_mine(cfg, ann / "panoptic_train.json", data / "images", props, run_dir, resume=True,
             on_log=on_log, progress=progress)
    times["mine"] = time.perf_counter() - t
    say(f"mine: tag warm-up {cfg.warmup.iters} + MIL {cfg.solver.max_iter} iterations -> "
        f"{run_dir} ({times['mine']:.0f}s)")
    t = time.perf_counter()
    predict_images(load_run(run_dir), data / "images", pred, ann / "panoptic_val.json", props,
                   progress=progress)
    times["predict"] = time.perf_counter() - t
    say(f"predict: val split -> {pred} ({times['predict']:.0f}s)")
    pq = evaluate_pq(ann / "panoptic_val.json", pred / "panoptic.json")
    corloc = evaluate_corloc(ann / "panoptic_train.json", run_dir / "mined/detections.json")
    return {"pq": pq, "corloc": corloc, "seconds": times, "out": str(out)}
