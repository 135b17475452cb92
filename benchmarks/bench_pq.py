"""Time jtsm's PQ against panopticapi's ``pq_compute`` on the same files, same worker count.

Generates random COCO panoptic ground truth + perturbed predictions (640x480, ~20 segments) in
a temporary folder, checks that every tool gives the same numbers, and prints the best wall time
of ``--repeat`` runs and the ratio to jtsm. Peers:

- ``panopticapi``: ``pq_compute`` in this interpreter (its pool pinned to ``workers``);
- ``--ref-python PY``: the same in another interpreter, e.g. a venv with panopticapi-lite and
  the numpy<2 its metadata pins (``np.unique``, its hot spot, is much slower there);
- ``--hotcoco-python PY``: hotcoco's Rust ``pq_compute`` (``RAYON_NUM_THREADS=workers``).

    .venv/bin/python benchmarks/bench_pq.py [--images 300] [--workers 1 2] [--repeat 3]
        [--ref-python /tmp/np1/bin/python] [--hotcoco-python /tmp/hot/bin/python] [--profile]

``--profile`` also prints where jtsm's time goes per image pair, stage by stage (one process).
The first line names the PNG decoder in use: the compiled ``jtsm.evaluation._pngcore`` when it
was built at install time, else libspng / OpenCV; ``JTSM_PNGCORE=0`` in the environment times
jtsm without the extension.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from timing import best_of  # benchmarks/timing.py (the script's folder is on sys.path)

from jtsm.evaluation.idmaps import png_decoder
from jtsm.evaluation.panoptic import evaluate_pq
from jtsm.evaluation.synthetic import write_pair_dataset


def _panopticapi(gt: str, pred: str, workers: int) -> dict[str, Any]:
    import panopticapi.evaluation as pe

    # pq_compute always uses multiprocessing.cpu_count() processes; pin it to `workers`.
    real = pe.multiprocessing.cpu_count
    pe.multiprocessing.cpu_count = lambda: workers
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return pe.pq_compute(gt, pred)
    finally:
        pe.multiprocessing.cpu_count = real


_EXTERNAL = r"""
import contextlib, io, json, os, sys, time
kind, gt, pred, workers, repeat = sys.argv[1:6]
workers, repeat = int(workers), int(repeat)
if kind == "hotcoco":
    from hotcoco.panoptic import pq_compute
else:
    import panopticapi.evaluation as pe
    pe.multiprocessing.cpu_count = lambda: workers
    pq_compute = pe.pq_compute
best = float("inf")
for _ in range(repeat):
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        res = pq_compute(gt, pred)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"seconds": best, "result": {g: res[g] for g in ("All", "Things", "Stuff")}}))
"""


def _external(python: str, kind: str, gt: str, pred: str, workers: int, repeat: int) -> tuple:
    """Best time and result of ``kind`` (hotcoco|panopticapi) run by another interpreter."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(workers))
    out = subprocess.run(
        [python, "-c", _EXTERNAL, kind, gt, pred, str(workers), str(repeat)],
        check=True, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(),
    )
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return d["seconds"], d["result"]


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(
        abs(a[g][m] - b[g][m]) < 1e-9 and a[g]["n"] == b[g]["n"]
        for g in ("All", "Things", "Stuff")
        for m in ("pq", "sq", "rq")
    )


def _profile(gt: Any, pred: Any) -> None:
    """jtsm's per-pair time by stage, the stages run one after another as in ``_job_stats``."""
    from pathlib import Path

    import cv2

    from jtsm.evaluation import idmaps, panoptic

    cv2.setNumThreads(1)
    jobs, cats = panoptic._build_jobs(Path(gt), Path(pred), None, None)
    if idmaps._pngcore is None:
        names, stage = _profile_stages_without_extension(jobs, cats)
    else:
        names, stage = _profile_stages_with_extension(jobs, cats)
    best = [float("inf")] * len(names)
    for _ in range(3):
        spent = [0.0] * len(names)
        for j in jobs:
            for i, v in enumerate(stage(j)):
                spent[i] += v
        best = [min(x, y) for x, y in zip(best, spent)]
    n = len(jobs)
    whole = best_of(lambda: panoptic.evaluate_pq(gt, pred, workers=1), 3)[0]
    names.append("json, jobs, per-image Python (the rest)")
    best.append(max(whole - sum(best), 0.0))
    print(f"profile: jtsm per image pair, 1 process, best of 3 passes over {n} pairs")
    for name, v in zip(names, best):
        print(f"  {name:<52} {1000 * v / n:6.3f} ms  {100 * v / whole:5.1f}%")
    print(f"  {'total (evaluate_pq, 1 worker)':<52} {1000 * whole / n:6.3f} ms")


def _profile_stages_with_extension(jobs: Any, cats: Any) -> tuple[list[str], Callable]:
    from jtsm.evaluation import idmaps, panoptic

    ix = idmaps.IdIndexer()
    work = ix.scratch.work
    core = idmaps._pngcore
    names = ["read the two files",
             "decode the two PNGs (_pngcore: CRCs, inflate, Adler-32, unfilter)",
             "runs of the pair (_pngcore.pair_runs less decoding)",
             "id lookup + weighted bincount", "matching (IoU table, TP/FP/FN)"]

    def stage(j: Any) -> list[float]:
        t = [time.perf_counter()]
        a, b = idmaps._read_bytes(j.gt_png), idmaps._read_bytes(j.pred_png)
        t.append(time.perf_counter())
        core.decode(a, work)
        core.decode(b, work)
        t.append(time.perf_counter())
        h, w, runs = core.pair_runs(a, b, work)
        g, p, lengths = np.frombuffer(runs, np.int64).reshape(3, -1)
        t.append(time.perf_counter())
        hist = ix.run_histogram(g, j.gt.ids, p, j.pred.ids, lengths)
        t.append(time.perf_counter())
        panoptic._match(hist, j.gt, j.pred, cats.num_classes, j.pred_png)
        t.append(time.perf_counter())
        d = [t[i + 1] - t[i] for i in range(len(names))]
        d[2] -= d[1]  # pair_runs decodes the two PNGs again
        return d

    return names, stage


def _profile_stages_without_extension(jobs: Any, cats: Any) -> tuple[list[str], Callable]:
    from pathlib import Path

    from jtsm.data import coco_panoptic
    from jtsm.evaluation import idmaps, panoptic
    from jtsm.fileio import check_png

    ix = idmaps.IdIndexer()
    decoder = "libspng" if coco_panoptic._pyspng is not None else "OpenCV"
    names = ["read the two files", "check_png (chunk CRCs)", f"decode the two PNGs ({decoder})",
             "change detection (cv2 xor, or, findNonZero)",
             "runs: starts, lengths, ids at the starts", "id lookup + weighted bincount",
             "matching (IoU table, TP/FP/FN)"]

    def stage(j: Any) -> list[float]:
        t = [time.perf_counter()]
        a, b = Path(j.gt_png).read_bytes(), Path(j.pred_png).read_bytes()
        t.append(time.perf_counter())
        check_png(a, j.gt_png)
        check_png(b, j.pred_png)
        t.append(time.perf_counter())
        g, p = coco_panoptic.read_panoptic_rgb(j.gt_png), coco_panoptic.read_panoptic_rgb(
            j.pred_png)
        t.append(time.perf_counter())
        idmaps._changes(g.reshape(-1), p.reshape(-1), 3, ix.scratch)
        t.append(time.perf_counter())
        idmaps.pair_runs(g, p, ix.scratch)  # includes the change detection again
        t.append(time.perf_counter())
        hist = ix.histogram(g, j.gt.ids, p, j.pred.ids)  # includes the runs again
        t.append(time.perf_counter())
        panoptic._match(hist, j.gt, j.pred, cats.num_classes, j.pred_png)
        t.append(time.perf_counter())
        d = [t[i + 1] - t[i] for i in range(len(names))]
        d[2] -= d[0] + d[1]  # read_panoptic_rgb reads and checks the files too
        d[5] -= d[4]
        d[4] -= d[3]
        return d

    return names, stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, min(2, os.cpu_count() or 1)])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ref-python", help="interpreter with panopticapi (e.g. on numpy<2)")
    ap.add_argument("--hotcoco-python", help="interpreter with hotcoco installed")
    ap.add_argument("--profile", action="store_true", help="also print jtsm's time by stage")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        gt, pred = write_pair_dataset(
            tmp, args.images, args.size[0], args.size[1], seed=0, num_segments=args.segments
        )
        print(
            f"data: {args.images} images {args.size[1]}x{args.size[0]}, ~{args.segments} "
            f"segments ({time.perf_counter() - t0:.1f} s to generate); cpus: {os.cpu_count()}"
        )
        print(f"jtsm PNG decoder: {png_decoder()}")
        peers: list[tuple[str, Callable[[int], tuple[float, Any]]]] = [
            ("panopticapi", lambda w: best_of(lambda: _panopticapi(str(gt), str(pred), w),
                                               args.repeat)),
        ]
        if args.ref_python:
            peers.append(("panopticapi (--ref-python)", lambda w: _external(
                args.ref_python, "panopticapi", str(gt), str(pred), w, args.repeat)))
        if args.hotcoco_python:
            peers.append(("hotcoco", lambda w: _external(
                args.hotcoco_python, "hotcoco", str(gt), str(pred), w, args.repeat)))
        else:
            print("hotcoco: not timed (give --hotcoco-python)")
        print(f"{'workers':>7}  {'tool':<28} {'best s':>7} {'per image':>9} {'vs jtsm':>8}  same")
        for w in dict.fromkeys(args.workers):
            t_ours, ours = best_of(lambda w=w: evaluate_pq(gt, pred, workers=w), args.repeat)
            per = 1000 * t_ours / args.images
            print(f"{w:>7}  {'jtsm':<28} {t_ours:>7.3f} {per:>7.2f}ms {1:>7.2f}x  -")
            for name, run in peers:
                t, res = run(w)
                per = 1000 * t / args.images
                print(f"{w:>7}  {name:<28} {t:>7.3f} {per:>7.2f}ms {t / t_ours:>7.2f}x  "
                      f"{_same(ours, res)}")
        if args.profile:
            _profile(gt, pred)


if __name__ == "__main__":
    main()
