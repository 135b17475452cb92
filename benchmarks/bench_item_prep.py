"""Host work of one training item at a training size: what the loader and MoIPool's host plan
cost, each beside the way it was done before (same results, checked here).

A VOC-sized photo (``benchmarks/realistic_proposals.py``: 375 x 500, realistic proposals) at
the training short side ``--short`` (4:3): resize, horizontal flip (NumPy's reversed-column
copy / ``cv2.flip``), HSV jitter (indexing each channel with NumPy / one ``cv2.LUT``),
``to_tensor``, the proposal tensors, the superpixel x cell incidence at stride 16 (``unique``
over every pixel / over the pixels whose key differs from their left and upper neighbours'),
and MoIPool's plan (the C kernel when built).

    python benchmarks/bench_item_prep.py --short 1216 --proposals 2000

Prints the best of ``--repeat`` runs per part, in milliseconds.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch
from realistic_proposals import realistic_proposals  # benchmarks/ (on sys.path)
from timing import best_of

from jtsm.data.mining_dataset import hflip, hsv_jitter, to_tensor
from jtsm.ops import binned_max as bm
from jtsm.ops.moi_pool import _kernel_plan, _plan, moi_bins, pixel_cells
from jtsm.ops.moi_pool import superpixel_cell_incidence as incidence
from jtsm.ops.proposal_tensors import ProposalTensors


def jitter_before(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """The HSV jitter as it was: each channel indexed through its table with NumPy."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    levels = np.arange(256, dtype=np.float32)
    for ch in (1, 2):
        f = float(np.exp(rng.uniform(-np.log(factor), np.log(factor))))
        hsv[..., ch] = np.clip(levels * f, 0, 255).astype(np.uint8)[hsv[..., ch]]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def incidence_before(superpixels: torch.Tensor, num_superpixels: int,
                     feat_size: tuple[int, int], scale: float) -> tuple[torch.Tensor, ...]:
    """The incidence as it was: ``unique`` over the keys of every pixel."""
    h, w = superpixels.shape
    hf, wf = feat_size
    ci, cj = pixel_cells(h, hf, scale), pixel_cells(w, wf, scale)
    n_cells = hf * wf
    keys = torch.unique((superpixels.long() * n_cells + (ci[:, None] * wf + cj[None, :]))
                        .reshape(-1))
    sp = torch.div(keys, n_cells, rounding_mode="floor")
    counts = torch.bincount(sp, minlength=num_superpixels)
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    return crow, keys % n_cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", type=int, default=1216, help="training short side (pixels)")
    ap.add_argument("--proposals", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    h, w = args.short, args.short * 4 // 3
    photo, ps = realistic_proposals(375, 500, args.proposals, 0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OpenCV "
          f"{cv2.__version__} ({cv2.getNumThreads()} threads); {h} x {w}, {len(ps)} proposals, "
          f"{ps.num_superpixels} superpixels")
    times: dict[str, float] = {}

    def run(name: str, fn):  # noqa: ANN001, ANN202
        times[name], out = best_of(fn, args.repeat)
        print(f"{name:34} {1000 * times[name]:8.1f} ms", flush=True)
        return out

    image = run("resize", lambda: cv2.resize(photo, (w, h), interpolation=cv2.INTER_LINEAR))
    big = run("proposals resize", lambda: ps.resize(h, w))
    a = run("flip, NumPy (before)", lambda: np.ascontiguousarray(image[:, ::-1]))
    b = run("flip, cv2.flip", lambda: hflip(image))
    assert np.array_equal(a, b)
    a = run("HSV jitter, NumPy (before)",
            lambda: jitter_before(image, 1.5, np.random.default_rng(0)))
    b = run("HSV jitter, cv2.LUT", lambda: hsv_jitter(image, 1.5, np.random.default_rng(0)))
    assert np.array_equal(a, b)
    run("to_tensor", lambda: to_tensor(image))
    pt = run("proposal tensors", lambda: ProposalTensors.from_proposal_set(big))
    feat = (-(-h // 16), -(-w // 16))
    a = run("incidence, all pixels (before)",
            lambda: incidence_before(pt.superpixels, pt.num_superpixels, feat, 1 / 16))
    b = run("incidence, deduplicated first",
            lambda: incidence(pt.superpixels, pt.num_superpixels, feat, 1 / 16))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    bins = moi_bins(pt, 1 / 16, 7, 7, *feat)
    plan = _kernel_plan if bm.kernel_available() else _plan
    run(f"plan ({'C kernel' if plan is _kernel_plan else 'torch'})",
        lambda: plan(pt, b, bins, feat[1], feat[0] * feat[1]))


if __name__ == "__main__":
    main()
