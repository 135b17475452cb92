"""The paper's ablations (Tables 1-3) on generated data, with the CPU presets.

    python benchmarks/ablate.py --out /tmp/ablate            # the demo's data and budget
    python benchmarks/ablate.py --out /tmp/ablate --quick    # a smoke budget (minutes)
    python benchmarks/ablate.py --out /tmp/ablate --tables parts

Tables (PQ / SQ / RQ of the val split, All / Things / Stuff, and the wall seconds of the row's
training on this machine, kept in ``RUN/seconds.json``):

- ``pooling`` (Table 1): the mining branch with ``roi-pool``, ``roi-align``, ``moi-tps`` and
  ``moi`` (shape-invariant MoIPool); mined-only predictions.
- ``heads`` (Table 3): ``n_r`` = 0..5 refinement heads; mined-only predictions.
- ``parts`` (Table 2): from the default mining run, predictions with no refinement (mined
  only), the instance branch only (IS), the semantic branch only (SS), IS+SS trained on the
  mined segments, IS+SS on GrabCut-relabelled ones (the full JTSM), and the fully-supervised
  upper bound (IS+SS trained on ground truth, same budget).

Every run folder is kept under ``OUT`` and reused when it is complete, so an interrupted
ablation goes on where it stopped.

The pooling and heads rows change the MIL stage only, so by default they start from the default
run's tag warm-up (``run_mine(warmup_from=...)``, which copies its last warm-up checkpoint in as
a finished stage) instead of training their own: the rows then differ in the factor under
test alone, and each costs its MIL stage, not the warm-up too. Their seconds are the MIL
stage's; the default row's include the warm-up and the mined outputs. ``--own-warmup`` trains
one per row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from jtsm.config import Config, load_config
from jtsm.engine.demo import refine_config, relabel_budget
from jtsm.engine.mine import run_mine
from jtsm.engine.predict import predict_images
from jtsm.engine.refine import run_refine
from jtsm.engine.relabel import run_relabel
from jtsm.engine.runs import load_run
from jtsm.evaluation.panoptic import evaluate_pq
from jtsm.fileio import atomic_write_json, read_json
from jtsm.rundir.layout import RunDir


def _prepare(out: Path, quick: bool) -> tuple[Path, Path, Path]:
    """Synthetic data (as the demo's) and selective-search proposals, made once."""
    from jtsm.data.synth import SynthConfig, write_synth_dataset
    from jtsm.engine.demo import demo_sizes
    from jtsm.proposals.runner import list_images, run_proposals

    data, props = out / "data", out / "proposals"
    n_train, n_val, size = demo_sizes(quick)
    ann = data / "annotations"
    if not (ann / "panoptic_val.json").is_file():
        write_synth_dataset(data, n_train, n_val, SynthConfig(height=size, width=size), seed=0)
    for split in ("train", "val"):
        for _ in run_proposals(list_images(data / "images", ann / f"panoptic_{split}.json"),
                               props, method="selective-search", max_proposals=2000):
            pass
    return data / "images", ann, props


def _check_same_warmup(cfg: Config, base: Config, name: str) -> None:
    """A shared warm-up is only the same experiment when everything it depends on is."""
    for part in ("seed", "backbone", "tag_warmup", "input"):
        if getattr(cfg, part) != getattr(base, part):
            raise SystemExit(f"{name}: its {part} config differs from the default run's, so it "
                             f"cannot share its warm-up (use --own-warmup)")


def _save_seconds(run: Path, seconds: float) -> None:
    atomic_write_json(run / "seconds.json", {"seconds": seconds})


def _seconds(run: Path) -> float:
    f = run / "seconds.json"
    return float(read_json(f)["seconds"]) if f.is_file() else float("nan")


class Ablation:
    """Runs (cached in ``out``) and their val PQ."""

    def __init__(self, out: Path, quick: bool) -> None:
        self.out = out
        self.quick = quick
        self.images, self.ann, self.props = _prepare(out, quick)
        self.mine_base = load_config("synth_quick" if quick else "synth")
        self.rows: dict[str, list[tuple[str, dict[str, Any], float]]] = {}

    def mine(self, name: str, overrides: dict[str, Any],
             warmup_from: Path | None = None) -> tuple[Path, float]:
        """A mining run (cached). ``warmup_from``: a run whose tag warm-up this one starts
        from (only MIL is trained; no mined outputs are written, the tables use val PQ)."""
        run = self.out / "runs" / name
        cfg = load_config(overrides=overrides, base=self.mine_base)
        if warmup_from is None:
            done = RunDir(run).weights.is_file() and RunDir(run).mined_json.is_file()
        else:
            _check_same_warmup(cfg, self.mine_base, name)
            done = RunDir(run).weights.is_file() and (run / "seconds.json").is_file()
        if not done:
            t = time.perf_counter()
            run_mine(cfg, self.ann / "panoptic_train.json", self.images, self.props, run,
                     resume=True, write_outputs=warmup_from is None, warmup_from=warmup_from)
            _save_seconds(run, time.perf_counter() - t)
        return run, _seconds(run)

    def refine(self, name: str, source: Path, pseudo: Path, overrides: dict[str, Any]
               ) -> tuple[Path, float]:
        run = self.out / "runs" / name
        preset = "synth_refine_quick" if self.quick else "synth_refine"
        base: Config = load_run(source).config
        cfg = load_config(preset, overrides, base=base)
        if not RunDir(run).weights.is_file():
            t = time.perf_counter()
            run_refine(cfg, source, pseudo, self.images, run, proposals=self.props, resume=True)
            _save_seconds(run, time.perf_counter() - t)
        return run, _seconds(run)

    def pq(self, run: Path, table: str, label: str, seconds: float) -> None:
        pred = run / "val"
        if not (pred / "panoptic.json").is_file():
            predict_images(load_run(run), self.images, pred, self.ann / "panoptic_val.json",
                           self.props)
        pq = evaluate_pq(self.ann / "panoptic_val.json", pred / "panoptic.json")
        self.rows.setdefault(table, []).append((label, pq, seconds))
        print(f"[{table}] {label}: PQ {100 * pq['All']['pq']:.1f} ({seconds:.0f} s)",
              file=sys.stderr, flush=True)

    def table(self, name: str) -> str:
        head = ("| setting | PQ | SQ | RQ | PQ Th | SQ Th | RQ Th | PQ St | SQ St | RQ St "
                "| seconds |\n| --- " + "| ---: " * 10 + "|")
        lines = [f"**{name}**", "", head]
        for label, pq, sec in self.rows.get(name, []):
            cells = [f"{100 * pq[g][k]:.1f}" for g in ("All", "Things", "Stuff")
                     for k in ("pq", "sq", "rq")]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {sec:.0f} |")
        return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="smoke budget (the *_quick presets)")
    ap.add_argument("--tables", default="pooling,heads,parts",
                    help="comma-separated: pooling, heads, parts")
    ap.add_argument("--own-warmup", action="store_true",
                    help="pooling/heads rows train their own tag warm-up instead of starting "
                         "from the default run's")
    args = ap.parse_args()
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = set(tables) - {"pooling", "heads", "parts"}
    if unknown:
        ap.error(f"unknown table(s): {sorted(unknown)}")
    ab = Ablation(args.out, args.quick)
    default_heads = ab.mine_base.mining.oicr_heads
    default_pooling = ab.mine_base.mining.pooling
    shared = None
    if ({"pooling", "heads"} & set(tables)) and not args.own_warmup \
            and ab.mine_base.tag_warmup.iters > 0:
        shared, _ = ab.mine("mine_default", {})
    if "pooling" in tables:
        for pooling in ("roi-pool", "roi-align", "moi-tps", "moi"):
            name = "mine_default" if pooling == default_pooling else f"mine_pool_{pooling}"
            run, sec = ab.mine(name, {"mining.pooling": pooling},
                               None if name == "mine_default" else shared)
            ab.pq(run, "pooling", pooling, sec)
    if "heads" in tables:
        for n in range(6):
            name = "mine_default" if n == default_heads else f"mine_heads_{n}"
            run, sec = ab.mine(name, {"mining.oicr_heads": n},
                               None if name == "mine_default" else shared)
            ab.pq(run, "heads", f"n_r = {n}", sec)
    if "parts" in tables:
        base, sec = ab.mine("mine_default", {})
        ab.pq(base, "parts", "no refinement (mined only)", sec)
        mined = RunDir(base).mined_json
        relabel = ab.out / "runs/relabel_grabcut"
        if not (relabel / "panoptic.json").is_file():
            t = time.perf_counter()
            # as the demo: GrabCut on as many training images as the refine run reads
            run_relabel(base, ab.images, relabel, evidence="grabcut", proposals=ab.props,
                        max_images=relabel_budget(refine_config(load_run(base).config,
                                                                ab.quick)))
            _save_seconds(relabel, time.perf_counter() - t)
        relabel_sec = _seconds(relabel)
        rows = [
            ("IS only (stuff mined)", "refine_is", mined,
             {"refine.semantic_weight": 0.0, "refine.stuff_from": "mined"}),
            ("SS only (things mined)", "refine_ss", mined,
             {"refine.instance_weight": 0.0, "refine.things_from": "mined"}),
            ("IS + SS on mined segments", "refine_is_ss", mined, {}),
            ("IS + SS on GrabCut pseudo labels (JTSM)", "refine_jtsm",
             relabel / "panoptic.json", {}),
            ("upper bound: IS + SS on ground truth", "refine_gt",
             ab.ann / "panoptic_train.json", {}),
        ]
        for label, name, pseudo, over in rows:
            run, rsec = ab.refine(name, base, pseudo, over)
            extra = relabel_sec if name == "refine_jtsm" else 0.0
            ab.pq(run, "parts", label, sec + rsec + extra)
    for name in tables:
        print(ab.table(name) + "\n")


if __name__ == "__main__":
    main()
