"""Which proposal settings cover which classes: recall and ABO per class, proposals and time.

For each setting (a proposal method, its ``--opt`` options and ``--max``) the proposals of the
first ``--images`` images of a split are made into a store of their own, ``OUT/<setting>``, as
``jtsm proposals --workers 1`` would (a store that exists is reused, images it lacks are
added), and scored against the split's panoptic ground truth: per thing class and over the
stuff segments, the share of segments some proposal covers at mask IoU >= 0.5 and >= 0.7 and
the average best overlap (ABO), with all of the setting's proposals; then recall at 0.5 over
what mining reads of them: the proposals above the mining preset's area floor
(``input.min_proposal_area``), the top ``input.max_proposals`` by score, or the top ``N`` for
each ``--read-max N`` (a union of two methods is left out there: their scores do not compare).
A setting ``A+B`` is the union of settings ``A`` and ``B`` (their masks on the overlay of both
superpixel maps, duplicates dropped): its proposals per image are the distinct masks of both,
its time the sum.

Seconds per image are the proposal stage's own figure (read the image, make and store its
proposals), one process, one thread; they are recorded beside each store
(``OUT/<setting>.seconds.json``) so a reused store still reports the time it took.

    python benchmarks/proposal_recall.py DATA --out OUT [--split train] [--images N]
        [--only fast quality fz50 fast+fz50 ...] [--preset synth] [--read-max 300 1000]

``DATA`` is a ``jtsm data synth`` folder (``DATA/images``, ``DATA/annotations``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402


@dataclass(frozen=True)
class Setting:
    """A proposal job: ``method``, its options and the proposals kept per image."""

    method: str
    max: int = 2000
    opt: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        opts = "".join(f" --opt {k}={v}" for k, v in self.opt.items())
        return f"--method {self.method} --max {self.max}{opts}"


_SS = "selective-search"
_FZ = "felzenszwalb"
#: the settings compared by default (keys name the stores); ``fast`` is the demo's
SETTINGS: dict[str, Setting] = {
    "fast": Setting(_SS),
    "fast-4000": Setting(_SS, 4000),
    "quality": Setting(_SS, 2000, {"mode": "quality"}),
    "quality-4000": Setting(_SS, 4000, {"mode": "quality"}),
    "single": Setting(_SS, 2000, {"mode": "single"}),
    "fast-5spaces": Setting(_SS, 2000, {"spaces": "hsv,lab,rgi,h,i"}),
    "fast-k25-200": Setting(_SS, 2000, {"ks": "25,50,100,200"}),
    "fast-k10-100": Setting(_SS, 2000, {"ks": "10,25,50,100"}),
    "fast-sim4": Setting(_SS, 2000, {"similarities": "CTSF,TSF,F,S"}),
    "fast-simTSF": Setting(_SS, 2000, {"similarities": "TSF,TS,SF"}),
    "fast-seed1": Setting(_SS, 2000, {"seed": 1}),
    "fast-sigma0.2": Setting(_SS, 2000, {"sigma": 0.2}),
    "fast-sigma0.4": Setting(_SS, 2000, {"sigma": 0.4}),
    "fast-sigma0.4-seed1": Setting(_SS, 2000, {"sigma": 0.4, "seed": 1}),
    "fast-sigma0": Setting(_SS, 2000, {"sigma": 0}),
    "fast-sigma0-k10-100": Setting(_SS, 2000, {"ks": "10,25,50,100", "sigma": 0}),
    "fast-sigma0-k10-100-4000": Setting(_SS, 4000, {"ks": "10,25,50,100", "sigma": 0}),
    "fast-sigma0-5spaces": Setting(_SS, 2000, {"spaces": "hsv,lab,rgi,h,i", "sigma": 0}),
    "quality-sigma0-4000": Setting(_SS, 4000, {"mode": "quality", "sigma": 0}),
    "fz25": Setting(_FZ, 2000, {"k": 25}),
    "fz50": Setting(_FZ, 2000, {"k": 50}),
    "fz100": Setting(_FZ, 2000, {"k": 100}),
    "fz200": Setting(_FZ, 2000, {"k": 200}),
    "fz50-sigma0": Setting(_FZ, 2000, {"k": 50, "sigma": 0}),
}
#: unions compared by default (``A+B``)
UNIONS: tuple[str, ...] = ("fast+fz50", "fast+fast-sigma0")


def thing_names(gt: Any) -> list[str]:
    return [str(c["name"]) for c in gt.categories.categories if gt.categories.isthing(int(c["id"]))]


def union(a: Any, b: Any) -> Any:
    """The distinct masks of proposal sets ``a`` and ``b`` on the overlay of their superpixel
    maps (a ``ProposalSet``)."""
    from jtsm.proposals.overlay import overlay
    from jtsm.structures import ProposalSet

    cells, labels = overlay([a.superpixels, b.superpixels])
    member = sp.vstack([a.membership[:, labels[0]], b.membership[:, labels[1]]]).tocsr()
    return ProposalSet(cells, member, np.concatenate([a.scores, b.scores])).clean()


def make_store(key: str, setting: Setting, items: list[Any], out: Path,
               workers: int = 1) -> dict[str, Any]:
    """Proposals of ``items`` into ``out/key`` (missing ones only); returns
    ``{"computed", "reused", "seconds": {image: s}}``, seconds of earlier runs included."""
    from jtsm.fileio import atomic_write_json, read_image, read_json
    from jtsm.proposals.runner import generate_one, run_proposals, update_index
    from jtsm.proposals.store import ProposalStore

    times_path = out / f"{key}.seconds.json"
    seconds: dict[str, float] = dict(read_json(times_path)) if times_path.is_file() else {}
    store = ProposalStore(out / key)
    if items and not all(store.exists(it.name) for it in items):
        # one untimed image first: the first call of a method pays for imports and caches
        generate_one(read_image(items[0].path), setting.method, setting.max, None, setting.opt)
    results = list(run_proposals(items, out / key, setting.method, setting.max, workers,
                                 setting.opt))
    update_index(out / key, results)
    done = [r for r in results if r.status == "done"]
    bad = [f"{r.name}: {r.error}" for r in results if r.status == "bad"]
    if bad:
        raise SystemExit(f"{key}: images that could not be read: {'; '.join(bad)}")
    for r in done:
        seconds[r.name] = r.seconds
    if done:
        atomic_write_json(times_path, seconds, indent=1)
    return {"computed": len(done), "reused": len(results) - len(done), "seconds": seconds}


def score(gt: Any, images: list[dict[str, Any]], load: Any,
          selects: dict[int, Any] | None = None) -> dict[str, Any]:
    """Best overlaps of every non-crowd segment of ``images`` over ``load(file_name, size)``'s
    proposals -> ``{"classes": {name | "things" | "stuff": {"recall@0.5", "recall@0.7",
    "abo", "n"}}, "proposals": mean count, "read": {top: the same over
    selects[top](proposals)}}``."""
    from jtsm.evaluation.recall import best_overlaps, summarise

    selects = selects or {}
    names = {int(c["id"]): str(c["name"]) for c in gt.categories.categories}
    best: dict[Any, dict[str, list[float]]] = {k: defaultdict(list) for k in [None, *selects]}
    counts: list[int] = []
    for im in images:
        pan = gt.read(int(im["id"]), check=False)
        segs = [s for s in pan.segments if not int(s.get("iscrowd", 0))]
        ps = load(str(im["file_name"]), pan.image_size)
        counts.append(len(ps))
        if not segs:
            continue
        ids = [int(s["id"]) for s in segs]
        for key, into in best.items():
            chosen = ps if key is None else selects[key](ps)
            b = best_overlaps(chosen, pan.ids, ids, [None])[0]
            for s, v in zip(segs, b.tolist()):
                cid = int(s["category_id"])
                thing = gt.categories.isthing(cid)
                into[names[cid] if thing else "stuff"].append(v)
                if thing:
                    into["things"].append(v)

    def groups(d: dict[str, list[float]]) -> dict[str, Any]:
        return {k: summarise(np.asarray(v)) for k, v in d.items()}

    return {"classes": groups(best[None]), "proposals": float(np.mean(counts)) if counts else 0.0,
            "read": {k: groups(best[k]) for k in selects}}


def run(data: Path, out: Path, keys: list[str], split: str = "train",
        images: int | None = None, workers: int = 1,
        settings: dict[str, Setting] | None = None, preset: str = "synth",
        read_max: list[int] | None = None,
        say: Any = print) -> tuple[list[str], list[dict[str, Any]]]:
    """Make (or reuse) every setting's store and score it; returns ``(thing class names,
    rows)``, a row per key: ``key``, ``what``, ``proposals``, ``seconds`` (per image, ``None``
    if unknown), ``computed``, ``reused``, ``classes`` and ``read`` (as :func:`score`): per
    budget of ``read_max`` (default: the preset's ``input.max_proposals``), the proposals
    mining with config ``preset`` reads (its area floor, then the top ``budget`` by score);
    ``None`` for a union of two methods, whose scores do not compare."""
    from dataclasses import replace

    from jtsm.config import load_config
    from jtsm.data.mining_dataset import select_proposals
    from jtsm.evaluation.cocogt import load_panoptic_gt
    from jtsm.proposals.runner import ImageItem
    from jtsm.proposals.store import ProposalStore

    table = dict(SETTINGS if settings is None else settings)
    for key in keys:  # every name checked before any work
        parts = key.split("+")
        if len(parts) > 2:
            raise SystemExit(f"{key!r}: a union joins two settings (A+B)")
        for k in parts:
            if k not in table:
                raise SystemExit(f"unknown setting {k!r} (known: {', '.join(table)}, or A+B "
                                 "for a union)")
    gt_json = data / "annotations" / f"panoptic_{split}.json"
    gt = load_panoptic_gt(gt_json)
    recs = [im for im in gt.images if int(im["id"]) in gt.annotations][:images]
    items = [ImageItem(str(im["file_name"]), data / "images" / str(im["file_name"]))
             for im in recs]
    names = [str(im["file_name"]) for im in recs]
    cfg = load_config(preset).input
    budgets = read_max or [cfg.max_proposals]
    selects = {int(b): (lambda ps, c=replace(cfg, max_proposals=int(b)): select_proposals(ps, c))
               for b in budgets}
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, dict[str, Any]] = {}

    def ensure(key: str) -> dict[str, Any]:
        if key not in made:
            t0 = time.perf_counter()
            made[key] = make_store(key, table[key], items, out, workers)
            say(f"{key}: {made[key]['computed']} images made, {made[key]['reused']} reused "
                f"({time.perf_counter() - t0:.0f} s) -> {out / key}")
        return made[key]

    def per_image(parts: list[str]) -> float | None:
        total = 0.0
        for k in parts:
            sec = made[k]["seconds"]
            if not all(n in sec for n in names):
                return None
            total += float(np.mean([sec[n] for n in names]))
        return total

    rows = []
    for key in keys:
        parts = key.split("+")
        for k in parts:
            ensure(k)
        stores = [ProposalStore(out / k) for k in parts]
        if len(parts) == 1:
            def load(name: str, size: Any, s: Any = stores[0]) -> Any:
                return s.load(name, expect_size=size)
        else:
            def load(name: str, size: Any, s: Any = stores) -> Any:
                return union(s[0].load(name, expect_size=size),
                             s[1].load(name, expect_size=size))
        same = len({table[k].method for k in parts}) == 1
        r = score(gt, recs, load, selects if same else None)
        what = " ∪ ".join(table[k].describe() for k in parts)
        rows.append({"key": key, "what": what, "proposals": r["proposals"],
                     "seconds": per_image(parts), "classes": r["classes"],
                     "read": r["read"] if same else None,
                     "computed": sum(made[k]["computed"] for k in parts),
                     "reused": sum(made[k]["reused"] for k in parts)})
    return thing_names(gt), rows


def tables(things: list[str], rows: list[dict[str, Any]], floor: str = "") -> list[str]:
    """Markdown: proposals, seconds and recall@0.5 per class; then recall@0.7; then ABO; then
    recall@0.5 of the proposals mining reads, per budget (``floor`` names the area floor)."""
    cols = things + ["things", "stuff"]

    def cell(groups: dict[str, Any] | None, name: str, metric: str) -> str:
        c = None if groups is None else groups.get(name)
        return "-" if c is None or not c["n"] else f"{100 * c[metric]:.1f}"

    budgets = next((list(r["read"]) for r in rows if r["read"]), [])
    parts: list[tuple[str, Any, str]] = [
        ("recall@0.5", None, "recall@0.5 (%), all proposals"),
        ("recall@0.7", None, "recall@0.7 (%), all proposals"),
        ("abo", None, "ABO (%), all proposals"),
    ] + [("recall@0.5", b, f"recall@0.5 (%) of the proposals mining reads: {floor}top {b} by "
          "score (- for a union of two methods)") for b in budgets]
    out = []
    for metric, budget, title in parts:
        first = budget is None and metric == "recall@0.5"
        head = ["setting"] + (["proposals/img", "s/img"] if first else []) + cols
        out += [f"\n{title}", "| " + " | ".join(head) + " |",
                "| --- |" + " ---: |" * (len(head) - 1)]
        for row in rows:
            extra = []
            if first:
                s = row["seconds"]
                extra = [f"{row['proposals']:.0f}", "-" if s is None else f"{s:.3f}"]
            groups = row["classes"] if budget is None else (row["read"] or {}).get(budget)
            out.append("| " + " | ".join([row["key"]] + extra
                                         + [cell(groups, c, metric) for c in cols]) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="a jtsm data synth folder")
    ap.add_argument("--out", type=Path, required=True, help="folder of the settings' stores")
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", type=int, default=None, help="the first N images (default all)")
    ap.add_argument("--only", nargs="+", metavar="SETTING",
                    help=f"settings to compare (default: all of {', '.join(SETTINGS)} and "
                         f"{', '.join(UNIONS)}); A+B is the union of A and B")
    ap.add_argument("--preset", default="synth",
                    help="the mining config whose proposal selection (input.min_proposal_area, "
                         "input.max_proposals) the last tables apply")
    ap.add_argument("--read-max", type=int, nargs="+", metavar="N",
                    help="budgets of the proposals mining reads, one table each (default: the "
                         "preset's input.max_proposals)")
    args = ap.parse_args(argv)
    import cv2

    from jtsm.config import load_config

    cv2.setNumThreads(1)
    keys = args.only or [*SETTINGS, *UNIONS]
    t0 = time.perf_counter()
    things, rows = run(args.data, args.out, keys, args.split, args.images,
                       preset=args.preset, read_max=args.read_max)
    counts = rows[0]["classes"] if rows else {}
    print(f"\n{args.data} ({args.split}, {args.images or 'all'} images); segments: "
          + ", ".join(f"{c} {counts[c]['n']}" for c in [*things, "things", "stuff"]
                      if c in counts))
    print(f"{time.perf_counter() - t0:.0f} s; one process, one thread")
    print("command: python benchmarks/proposal_recall.py " + " ".join(
        argv if argv is not None else sys.argv[1:]))
    print("settings:")
    for row in rows:
        print(f"  {row['key']}: {row['what']}")
    cfg = load_config(args.preset).input
    floor = f"preset {args.preset}, masks >= {100 * cfg.min_proposal_area:g}% of the image, "
    print("\n".join(tables(things, rows, floor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
