"""Mining levers, each measured against the same base run on the same data.

    python benchmarks/generalise.py --style photo --out /tmp/gen-photo     # the base run first
    python benchmarks/levers.py --base /tmp/gen-photo \\
        --lever floor-0.2%=input.min_proposal_area=0.002 \\
        --lever pool-14=mining.pool_size=14 --out /tmp/levers-photo

``--base`` is a folder ``benchmarks/generalise.py`` (or ``jtsm demo --out``) wrote: its data,
its proposal store and its mining run. Each ``--lever NAME=KEY=VALUE[,KEY=VALUE...]`` is a
mining run with those config overrides over the base run's config, trained from the base run's
finished tag warm-up (``run_mine(warmup_from=...)``), so that the rows differ in the lever alone
and each costs its MIL stage. A lever that changes what the warm-up depends on (the backbone,
the warm-up itself, the seed or the image input) trains its own warm-up, and the table says so.

Per row: val PQ (all / things / stuff) of the mined-only predictions, val CorLoc of their
detections, per thing class PQ, and the MIL stage's seconds. ``--full`` also relabels the
base's relabel sample with each lever's run and refines it as the demo does (the JTSM row).
Runs are kept under ``--out`` and reused, so an interrupted table goes on where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from jtsm.config import Config, load_config
from jtsm.engine.demo import refine_config, relabel_budget
from jtsm.engine.mine import run_mine
from jtsm.engine.predict import predict_images
from jtsm.engine.refine import run_refine
from jtsm.engine.relabel import run_relabel
from jtsm.engine.runs import load_run
from jtsm.evaluation.detection import evaluate_corloc
from jtsm.evaluation.panoptic import evaluate_pq
from jtsm.fileio import atomic_write_json, read_json
from jtsm.rundir.layout import RunDir

WARMUP_PARTS = ("seed", "backbone", "tag_warmup")
WARMUP_INPUT = ("train_scales", "max_size", "hflip", "hsv_jitter")  # what the warm-up reads


def parse_lever(text: str) -> tuple[str, dict[str, str]]:
    """``NAME=KEY=VALUE[,KEY=VALUE]`` -> (name, overrides); ``NAME=`` is the base config."""
    name, _, rest = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: want NAME=KEY=VALUE[,KEY=VALUE...]")
    over: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"{text!r}: {item!r} is not KEY=VALUE")
        over[key.strip()] = value.strip()
    return name, over


def shares_warmup(cfg: Config, base: Config) -> bool:
    """Whether a run of ``cfg`` may start from ``base``'s tag warm-up: everything the warm-up
    reads is equal."""
    if any(getattr(cfg, p) != getattr(base, p) for p in WARMUP_PARTS):
        return False
    return all(getattr(cfg.input, k) == getattr(base.input, k) for k in WARMUP_INPUT)


def _seconds(run: Path) -> float:
    f = run / "seconds.json"
    return float(read_json(f)["seconds"]) if f.is_file() else float("nan")


def _timed(run: Path, fn: Any) -> float:
    if not (run / "seconds.json").is_file():
        t = time.perf_counter()
        fn()
        atomic_write_json(run / "seconds.json", {"seconds": time.perf_counter() - t})
    return _seconds(run)


def _predict_eval(run: Path, images: Path, ann: Path, props: Path) -> dict[str, Any]:
    pred = run / "val"
    if not (pred / "panoptic.json").is_file():
        predict_images(load_run(run), images, pred, ann / "panoptic_val.json", props)
    pq = evaluate_pq(ann / "panoptic_val.json", pred / "panoptic.json")
    pq["corloc"] = evaluate_corloc(ann / "panoptic_val.json", pred / "detections.json")
    return pq


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True,
                    help="a folder of benchmarks/generalise.py or jtsm demo")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lever", type=parse_lever, action="append", default=[],
                    help="NAME=KEY=VALUE[,KEY=VALUE...] (repeatable)")
    ap.add_argument("--full", action="store_true",
                    help="also relabel and refine with each lever (the JTSM row)")
    args = ap.parse_args(argv)
    base = args.base
    images, ann, props = base / "data/images", base / "data/annotations", base / "proposals"
    base_run = base / "mine"
    if not RunDir(base_run).weights.is_file():
        print(f"error: {base_run}: no finished mining run (run benchmarks/generalise.py "
              f"--out {base} first)", file=sys.stderr)
        return 1
    base_cfg = load_run(base_run).config
    rows: list[tuple[str, dict[str, Any], float, bool, dict[str, Any] | None]] = []
    for name, over in [("base", {})] + args.lever:
        if name == "base":
            run, sec, own = base_run, float("nan"), True
        else:
            cfg = load_config(overrides=over, base=base_cfg)
            own = not shares_warmup(cfg, base_cfg)
            run = args.out / name
            sec = _timed(run, partial(
                run_mine, cfg, ann / "panoptic_train.json", images, props, run, resume=True,
                write_outputs=args.full, warmup_from=None if own else base_run))
        pq = _predict_eval(run, images, ann, props)
        full = None
        if args.full:
            full = _jtsm_row(base, run, args.out / f"{name}-jtsm", images, ann, props)
        rows.append((name, pq, sec, own, full))
        print(f"{name}: PQ {100 * pq['All']['pq']:.1f} things {100 * pq['Things']['pq']:.1f} "
              f"stuff {100 * pq['Stuff']['pq']:.1f} CorLoc {100 * pq['corloc']['corloc']:.1f}",
              file=sys.stderr, flush=True)
    print(table(rows))
    return 0


def _jtsm_row(base: Path, mine: Path, out: Path, images: Path, ann: Path, props: Path
              ) -> dict[str, Any]:
    """Relabel (GrabCut, the demo's sample size) and refine with the demo's refine preset;
    val PQ of the refined run."""
    relabel, refine = out / "relabel", out / "refine"
    rcfg = refine_config(load_run(mine).config, quick=False)
    if base / "mine" == mine:
        relabel, refine = base / "relabel", base / "refine"
    if not (relabel / "panoptic.json").is_file():
        run_relabel(mine, images, relabel, evidence="grabcut", proposals=props,
                    max_images=relabel_budget(rcfg))
    if not RunDir(refine).weights.is_file():
        run_refine(rcfg, mine, relabel / "panoptic.json", images, refine, proposals=props,
                   resume=True)
    return _predict_eval(refine, images, ann, props)


def table(rows: list[tuple[str, dict[str, Any], float, bool, dict[str, Any] | None]]
          ) -> str:
    """Markdown: one row per lever, mined-only val figures (and the refined ones with
    ``--full``), then per thing class PQ."""
    def p(v: float) -> str:
        return f"{100 * v:.1f}"

    full = any(r[4] is not None for r in rows)
    head = "| lever | PQ | PQ things | PQ stuff | CorLoc (val) | MIL s |"
    if full:
        head += " JTSM PQ | JTSM things | JTSM stuff |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for name, pq, sec, own, f in rows:
        cells = [name + (" (own warm-up)" if own and name != "base" else ""),
                 p(pq["All"]["pq"]), p(pq["Things"]["pq"]), p(pq["Stuff"]["pq"]),
                 p(pq["corloc"]["corloc"]), f"{sec:.0f}" if sec == sec else "-"]
        if full:
            cells += [p(f["All"]["pq"]), p(f["Things"]["pq"]), p(f["Stuff"]["pq"])] if f \
                else ["-"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    things = [c for c in rows[0][1]["per_class"]
              if c in rows[0][1]["corloc"].get("per_class", {})]
    lines += ["", "| lever | " + " | ".join(things) + " |",
              "|" + " --- |" * (len(things) + 1)]
    for name, pq, _, _, _ in rows:
        lines.append(f"| {name} | " + " | ".join(
            p(pq["per_class"][c]["pq"]) if c in pq["per_class"] else "-" for c in things) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
