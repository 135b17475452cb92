"""``jtsm demo``: the whole pipeline on the generated dataset.

synth data -> selective-search proposals -> mine (tag warm-up + MIL) -> relabel (GrabCut)
-> refine (instance + semantic branches) -> predict the val split with the mining run and with
the refined run -> PQ of both (and CorLoc of the mined training detections). Every stage writes
its standard files under ``OUT`` and is skipped when its output already exists, so a rerun
after a kill goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jtsm.config import Config, load_config
from jtsm.rundir.layout import DETECTIONS, PANOPTIC_JSON, RunDir

if TYPE_CHECKING:
    from jtsm.data.synth import SynthConfig

__all__ = ["demo_config", "demo_sizes", "refine_config", "relabel_budget", "run_demo"]


def demo_sizes(quick: bool) -> tuple[int, int, int]:
    """The demo's generated data: ``(train images, val images, side in px)``.

    2000 training images, not 1000: the from-scratch warm-up memorises 1000 (held-out classes:
    CorLoc 71% -> 82%, mined val PQ 46.5 -> 53.0; README, "More images, not more iterations").
    """
    return (60, 20, 96) if quick else (2000, 100, 128)


def demo_config(quick: bool) -> Config:
    """The preset the demo mines with: ``synth`` (``quick``: ``synth_quick``, a smoke-test
    budget for CI)."""
    return load_config("synth_quick" if quick else "synth")


def refine_config(mine_cfg: Config, quick: bool) -> Config:
    """The refine stage's config: the mining run's, with ``synth_refine`` (``quick``:
    ``synth_refine_quick``) over it."""
    return load_config("synth_refine_quick" if quick else "synth_refine", base=mine_cfg)


def relabel_budget(refine_cfg: Config) -> int:
    """How many training images the demo relabels: as many as its refine run reads
    (``solver.max_iter x solver.ims_per_batch``, one epoch), so no GrabCut result goes unused.
    The sample is random (``jtsm relabel --max-images``); refine then trains on it."""
    return refine_cfg.solver.max_iter * refine_cfg.solver.ims_per_batch


def run_demo(
    out: str | os.PathLike[str],
    quick: bool = False,
    say: Callable[[str], None] = print,
    progress: Callable[..., Any] | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    synth: SynthConfig | None = None,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Run every stage; returns the PQ of the val predictions (mined and refined), CorLoc and
    stage timings.

    ``synth`` and ``seed`` generate other data than the demo's (other classes and sizes, for
    ``benchmarks/generalise.py``); the presets stay the same. ``device``: where the models
    train and predict (:func:`jtsm.engine.device.resolve_device`).
    """
    from jtsm.data.synth import SynthConfig, write_synth_dataset
    from jtsm.engine.device import resolve_device
    from jtsm.engine.mine import run_mine
    from jtsm.engine.predict import predict_images
    from jtsm.engine.refine import run_refine
    from jtsm.engine.relabel import run_relabel
    from jtsm.engine.runs import load_run
    from jtsm.evaluation.detection import evaluate_corloc
    from jtsm.evaluation.panoptic import evaluate_pq
    from jtsm.fileio import read_json
    from jtsm.proposals.runner import list_images, run_proposals

    dev = resolve_device(device)
    out = Path(out)
    data, props = out / "data", out / "proposals"
    mine_dir, relabel_dir, refine_dir = out / "mine", out / "relabel", out / "refine"
    n_train, n_val, size = demo_sizes(quick)
    synth = synth or SynthConfig(height=size, width=size)
    ann = data / "annotations"
    images = data / "images"
    times: dict[str, float] = {}

    def stage(name: str) -> Callable[[], None]:
        t = time.perf_counter()

        def done() -> None:
            times[name] = time.perf_counter() - t
        return done

    done = stage("data")
    if not (ann / "panoptic_val.json").is_file():
        write_synth_dataset(data, n_train, n_val, synth, seed=seed)
    done()
    say(f"data: {n_train} train + {n_val} val synthetic images -> {data}")

    done = stage("proposals")
    for split in ("train", "val"):
        items = list_images(images, ann / f"panoptic_{split}.json")
        results = run_proposals(items, props, method="selective-search", max_proposals=2000)
        if progress is not None:
            results = progress(results, len(items), f"proposals {split}")
        for _ in results:
            pass
    done()
    say(f"proposals: selective search -> {props} ({times['proposals']:.0f}s)")

    done = stage("mine")
    cfg = demo_config(quick)
    run_mine(cfg, ann / "panoptic_train.json", images, props, mine_dir, resume=True,
             on_log=on_log, progress=progress, device=dev)
    done()
    say(f"mine: tag warm-up {cfg.tag_warmup.iters} + MIL {cfg.solver.max_iter} iterations -> "
        f"{mine_dir} ({times['mine']:.0f}s)")

    done = stage("relabel")
    rcfg = refine_config(cfg, quick)
    n_relabel = relabel_budget(rcfg)
    run_relabel(mine_dir, images, relabel_dir, evidence="grabcut", proposals=props,
                progress=progress, max_images=n_relabel, seed=seed)
    done()
    say(f"relabel: GrabCut on the mined segments of {min(n_relabel, n_train)} of the {n_train} "
        f"training images (as many as refine reads) -> {relabel_dir} "
        f"({times['relabel']:.0f}s)")

    done = stage("refine")
    if not RunDir(refine_dir).weights.is_file():
        run_refine(rcfg, mine_dir, relabel_dir / PANOPTIC_JSON, images, refine_dir,
                   proposals=props, resume=True, on_log=on_log, device=dev)
    done()
    say(f"refine: {rcfg.solver.max_iter} iterations -> {refine_dir} ({times['refine']:.0f}s)")

    done = stage("predict")
    val = ann / "panoptic_val.json"
    results: dict[str, Any] = {}
    for name, run_dir in (("mined", mine_dir), ("refined", refine_dir)):
        pred = out / f"val_{name}"
        predict_images(load_run(run_dir, dev), images, pred, val, props, progress=progress)
        results[name] = evaluate_pq(val, pred / PANOPTIC_JSON)
    done()
    say(f"predict: val split, mining run and refined run -> {out}/val_* "
        f"({times['predict']:.0f}s)")
    corloc = evaluate_corloc(ann / "panoptic_train.json", RunDir(mine_dir).mined / DETECTIONS)
    sampled = [im["id"] for im in read_json(relabel_dir / PANOPTIC_JSON)["images"]]
    pseudo = evaluate_pq(ann / "panoptic_train.json", relabel_dir / PANOPTIC_JSON,
                         image_ids=sampled)  # scored on the images relabelled
    return {"pq": results["refined"], "pq_mined": results["mined"], "pq_pseudo_train": pseudo,
            "corloc": corloc, "seconds": times, "out": str(out)}

