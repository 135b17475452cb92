"""Benchmark: jtsm's MoIPool against torchvision's RoIPool / RoIAlign, measured in the same run.

Forward + backward time at 2000 proposals, 512 channels, a 38x50 feature map (a 608x800 image
at stride 16), on the CPU (one thread) and, when a CUDA device is present, on it. Proposals
are realistic segments: unions of 1-60 neighbouring superpixels of a 600-superpixel map, boxes
from their extents. Each row's ratio is against ``torchvision.ops.roi_pool`` (``tv-roipool``)
on the same device; ``tv-roialign`` is the other baseline of Table 1.

- ``moi``: shape-invariant MoIPool through its kernel: the C kernel of ``jtsm.ops._binnedmax``
  on the CPU when built, the Triton kernel of ``jtsm.ops.binned_max_triton`` on CUDA when
  triton imports (the header says which ran); ``moi-torch``: the same op on its torch path
  (``JTSM_BINNEDMAX=0`` switches both kernels off), on the CPU and on CUDA; ``moi-tps``: the
  thin-plate-spline MoIPool.
- ``tv-roipool`` / ``tv-roialign``: ``torchvision.ops`` on the proposals' boxes (what
  ``jtsm.ops.roi_pool`` / ``roi_align`` call).

Peak memory (CPU): each measurement runs in a fresh subprocess that only loads its inputs; we
report the rise of the peak RSS (``VmHWM``, reset just before the call) over the RSS before
the call, and the "working" part: that rise minus the output and the output-gradient tensors,
whose size any pooling op must pay (P x C x 7 x 7 floats each). On CUDA the timing table has
a "working MB" column: ``torch.cuda.max_memory_allocated`` during one forward + backward over
what was allocated before it, minus the same two tensors and the feature gradient.

Usage: ``python benchmarks/bench_pooling.py [--proposals 2000] [--repeat 3] [--counts 500 1000]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp
import torch
import torchvision
from scipy.spatial import cKDTree

from jtsm.ops.boxes import inclusive_boxes
from jtsm.ops.moi_pool import moi_pool, superpixel_cell_incidence
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.ops.tps import moi_tps_pool
from jtsm.structures import ProposalSet

H, W, STRIDE, C, OUT = 608, 800, 16, 512, 7
METHODS = ["moi", "moi-torch", "moi-tps", "tv-roipool", "tv-roialign"]


def make_proposals(n: int, seed: int = 0) -> ProposalTensors:
    rng = np.random.default_rng(seed)
    n_sp = 600
    centres = np.stack([rng.uniform(0, H, n_sp), rng.uniform(0, W, n_sp)], 1)
    yy, xx = np.mgrid[0:H, 0:W]
    spm = cKDTree(centres).query(np.stack([yy.ravel(), xx.ravel()], 1))[1].reshape(H, W)
    adj = sp.lil_matrix((n_sp, n_sp), dtype=bool)
    adj[spm[:, 1:].ravel(), spm[:, :-1].ravel()] = True
    adj[spm[1:, :].ravel(), spm[:-1, :].ravel()] = True
    adj = (adj + adj.T).tocsr()
    rows, cols = [], []
    for p in range(n):
        cur = {int(rng.integers(n_sp))}
        target = int(rng.integers(1, 61))
        while len(cur) < target:
            k = int(rng.choice(list(cur)))
            nb = adj.indices[adj.indptr[k] : adj.indptr[k + 1]]
            cur.add(int(rng.choice(nb)))
        rows += [p] * len(cur)
        cols += sorted(cur)
    member = sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(n, n_sp))
    ps = ProposalSet(spm.astype(np.int32), member, scores=rng.uniform(0, 1, n))
    return ProposalTensors.from_proposal_set(ps)


def run(method: str, feat: torch.Tensor, props: ProposalTensors) -> torch.Tensor:
    """One forward + backward on ``feat``'s device; returns the feature gradient.
    ``<name>-torch``: the same op with its kernels switched off (``JTSM_BINNEDMAX=0``)."""
    if method.endswith("-torch"):
        old = os.environ.get("JTSM_BINNEDMAX")
        os.environ["JTSM_BINNEDMAX"] = "0"
        try:
            return run(method[: -len("-torch")], feat, props)
        finally:
            if old is None:
                del os.environ["JTSM_BINNEDMAX"]
            else:
                os.environ["JTSM_BINNEDMAX"] = old
    s = 1.0 / STRIDE
    f = feat.detach().requires_grad_(True)
    if method == "moi":
        out = moi_pool(f, props, OUT, s, "code")
    elif method == "moi-tps":
        out = moi_tps_pool(f, props, OUT, s, 2, True)
    elif method == "tv-roipool":
        out = torchvision.ops.roi_pool(f, [inclusive_boxes(props.boxes)], OUT, s)
    elif method == "tv-roialign":
        out = torchvision.ops.roi_align(f, [props.boxes], OUT, s, 2, True)
    else:
        raise ValueError(method)
    out.backward(torch.ones_like(out))
    return f.grad


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_methods(feat: torch.Tensor, props: ProposalTensors, repeat: int,
                 methods: list[str]) -> dict[str, float]:
    """Best-of-``repeat`` fwd+bwd seconds of each method (after one warm-up call)."""
    dev = str(feat.device)
    times = {}
    for m in methods:
        run(m, feat, props)
        _sync(dev)
        ts = []
        for _ in range(repeat):
            t = time.perf_counter()
            run(m, feat, props)
            _sync(dev)
            ts.append(time.perf_counter() - t)
        times[m] = min(ts)
    return times


def cuda_working_mb(feat: torch.Tensor, props: ProposalTensors,
                    methods: list[str]) -> dict[str, float]:
    """Peak CUDA memory of one fwd+bwd of each method beyond what was allocated before it,
    minus the output, its gradient and the feature gradient (MB)."""
    unavoidable = (2 * len(props) * C * OUT * OUT + feat.numel()) * feat.element_size()
    work = {}
    for m in methods:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run(m, feat, props)
        torch.cuda.synchronize()
        work[m] = (torch.cuda.max_memory_allocated() - base - unavoidable) / 2**20
    return work


def print_times(device: str, times: dict[str, float],
                work: dict[str, float] | None = None) -> None:
    ref = times["tv-roipool"]
    print(f"\n{device}: {'method':<12}{'fwd+bwd ms':>12}{'vs tv-roipool':>15}"
          f"{'vs tv-roialign':>16}" + (f"{'working MB':>12}" if work else ""))
    for m, t in times.items():
        print(f"{'':<{len(device) + 2}}{m:<12}{1e3 * t:>12.1f}{t / ref:>14.2f}x"
              f"{t / times['tv-roialign']:>15.2f}x" + (f"{work[m]:>12.0f}" if work else ""))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM: per address space, so not inherited across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    try:  # Linux >= 4.0: "5" resets the peak RSS to the current RSS
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def measure_memory(method: str, path: str) -> dict:
    """Peak RSS rise of one forward + backward, in a fresh process that only loaded inputs."""
    torch.set_num_threads(1)
    data = torch.load(path, weights_only=True)
    props = ProposalTensors.from_dict(data["props"])
    feat = data["feat"]
    n = len(props)
    _reset_peak()
    before = _rss_mb()
    run(method, feat, props)
    peak = _peak_mb()
    out_mb = n * C * OUT * OUT * 4 / 2**20
    return {"peak_rise_mb": peak - before, "output_mb": out_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proposals", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--counts", type=int, nargs="*", default=[500, 1000, 2000, 4000],
                    help="proposal counts of the CPU memory table (none: skip it)")
    ap.add_argument("--mem", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem:
        print(json.dumps(measure_memory(*args.mem)))
        return
    torch.set_num_threads(1)
    from jtsm.ops.binned_max import kernel_available

    if not kernel_available():
        print("# jtsm.ops._binnedmax not built: moi runs its torch path on the CPU too")
    n = args.proposals
    props = make_proposals(n)
    feat = torch.randn(1, C, H // STRIDE, W // STRIDE,
                       generator=torch.Generator().manual_seed(1))
    fh, fw = feat.shape[2:]
    bx = props.boxes
    mean_box = float(((bx[:, 2:] - bx[:, :2]) / STRIDE).prod(1).mean())
    print(f"# {n} proposals, {C} channels, {fh}x{fw} map, mean box {mean_box:.0f} cells, "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}, CPU 1 thread")
    t0 = time.perf_counter()
    superpixel_cell_incidence(props.superpixels, props.num_superpixels, (fh, fw), 1 / STRIDE)
    print(f"# superpixel-cell incidence (inside moi, once per image): "
          f"{1e3 * (time.perf_counter() - t0):.0f} ms")
    print_times("cpu", time_methods(feat, props, args.repeat, METHODS))
    if torch.cuda.is_available():
        from jtsm.ops import binned_max_triton

        dev = "cuda"
        if binned_max_triton.available():
            import triton

            kernel = f"the Triton kernel (triton {triton.__version__})"
        else:
            kernel = "its torch path (triton does not import)"
        print(f"\n# {torch.cuda.get_device_name()}: moi runs {kernel}, moi-torch the torch path")
        feat_d, props_d = feat.to(dev), props.to(dev)
        print_times(dev, time_methods(feat_d, props_d, args.repeat, METHODS),
                    cuda_working_mb(feat_d, props_d, METHODS))
    if not args.counts:
        return
    print(f"\n{'method':<14}{'P':>6}{'peak rise MB':>14}{'output MB':>11}{'working MB':>12}")
    tmp = tempfile.mkdtemp(prefix="jtsm_bench_")
    big = make_proposals(max(args.counts))
    for m in ("moi", "moi-torch", "tv-roipool"):
        for k in args.counts:
            path = f"{tmp}/inputs_{k}.pt"
            sub = ProposalTensors(big.superpixels, big.crow[: k + 1],
                                  big.col[: int(big.crow[k])], big.boxes[:k], big.scores[:k],
                                  big.num_superpixels)
            torch.save({"props": sub.as_dict(), "feat": feat}, path)
            res = subprocess.run([sys.executable, __file__, "--mem", m, path],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                print(f"{m:<14}{k:>6}  failed: {res.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            # output + its gradient (ones_like) are the op's unavoidable P x C x 7 x 7 tensors
            work = r["peak_rise_mb"] - 2 * r["output_mb"]
            print(f"{m:<14}{k:>6}{r['peak_rise_mb']:>14.0f}{r['output_mb']:>11.0f}"
                  f"{work:>12.0f}")


if __name__ == "__main__":
    main()
