"""Time jtsm's PQ against panopticapi's ``pq_compute`` on the same files, same worker count.

Generates random COCO panoptic ground truth + perturbed predictions (640x480, ~20 segments) in
a temporary folder, checks that every tool gives the same numbers, and prints the best wall time
of ``--repeat`` runs and the ratio to jtsm. Peers:

- ``panopticapi``: ``pq_compute`` in this interpreter (its pool pinned to ``workers``);
- ``--ref-python PY``: the same in another interpreter, e.g. a venv with panopticapi-lite and
  the numpy<2 its metadata pins (``np.unique``, its hot spot, is much slower there);
- ``--hotcoco-python PY``: hotcoco's Rust ``pq_compute`` (``RAYON_NUM_THREADS=workers``).

    .venv/bin/python benchmarks/bench_pq.py [--images 300] [--workers 1 2] [--repeat 3]
        [--ref-python /tmp/np1/bin/python] [--hotcoco-python /tmp/hot/bin/python]
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

from timing import best_of  # benchmarks/timing.py (the script's folder is on sys.path)

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, min(2, os.cpu_count() or 1)])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ref-python", help="interpreter with panopticapi (e.g. on numpy<2)")
    ap.add_argument("--hotcoco-python", help="interpreter with hotcoco installed")
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


if __name__ == "__main__":
    main()
