"""Benchmark: MoIPool vs RoIPool / RoIAlign (ours, pure torch) vs a C++ RoIPool, on CPU.

Forward + backward time and peak memory at 2000 proposals, 512 channels, a 38x50 feature map
(a 608x800 image at stride 16), all in the same run, one thread each. Proposals are realistic
segments: unions of 1-60 neighbouring superpixels of a 600-superpixel map, boxes from their
extents.

The C++ RoIPool is a plain loop (the classic Fast R-CNN kernel: per RoI, channel and bin, a max
over the bin's cells with argmax; backward scatters through the argmax) compiled here with
``torch.utils.cpp_extension.load_inline`` (needs g++ and ninja; skipped otherwise), with our
bin convention so outputs can be checked equal. torchvision's ``roi_pool`` / ``roi_align`` are
measured too when ``import torchvision`` works (in the project venv it does not).

Peak memory: each measurement runs in a fresh subprocess that only loads its inputs; we report
the rise of the peak RSS (``VmHWM``, reset just before the call) over the RSS before the call,
and the "working" part: that rise minus the output and the output-gradient tensors, whose
size any pooling op must pay (P x C x 7 x 7 floats each).

``moi`` and ``roi-pool`` run the C kernel of ``jtsm.ops._binnedmax`` when it is built;
``moi-torch`` and ``roi-pool-torch`` are the same ops on their pure-torch path
(``JTSM_BINNEDMAX=0``), measured in the same run.

Usage: ``python benchmarks/bench_pooling.py [--proposals 2000] [--repeat 3]``
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
from scipy.spatial import cKDTree

from jtsm.ops.boxes import cell_boxes
from jtsm.ops.moi_pool import moi_pool, superpixel_cell_incidence
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.ops.roi_align import roi_align
from jtsm.ops.roi_pool import roi_pool
from jtsm.ops.tps import moi_tps_pool
from jtsm.structures import ProposalSet

H, W, STRIDE, C, OUT = 608, 800, 16, 512, 7

CPP = r"""
#include <torch/extension.h>
#include <limits>
#include <vector>

std::vector<at::Tensor> fwd(at::Tensor x, at::Tensor cb, int64_t ph, int64_t pw) {
  const int64_t C = x.size(0), H = x.size(1), W = x.size(2), K = cb.size(0);
  auto out = at::zeros({K, C, ph, pw}, x.options());
  auto arg = at::full({K, C, ph, pw}, -1, x.options().dtype(at::kInt));
  const float* X = x.data_ptr<float>();
  const int64_t* B = cb.data_ptr<int64_t>();
  float* O = out.data_ptr<float>();
  int* A = arg.data_ptr<int>();
  for (int64_t k = 0; k < K; ++k) {
    const int64_t c0 = B[4 * k], r0 = B[4 * k + 1], c1 = B[4 * k + 2], r1 = B[4 * k + 3];
    const int64_t hb = r1 - r0, wb = c1 - c0;
    for (int64_t c = 0; c < C; ++c) {
      const float* Xc = X + c * H * W;
      for (int64_t u = 0; u < ph; ++u) {
        int64_t hs = std::min(std::max(r0 + (hb * u) / ph, (int64_t)0), H);
        int64_t he = std::min(std::max(r0 + (hb * (u + 1) + ph - 1) / ph, (int64_t)0), H);
        for (int64_t v = 0; v < pw; ++v) {
          int64_t ws = std::min(std::max(c0 + (wb * v) / pw, (int64_t)0), W);
          int64_t we = std::min(std::max(c0 + (wb * (v + 1) + pw - 1) / pw, (int64_t)0), W);
          float m = -std::numeric_limits<float>::infinity();
          int best = -1;
          for (int64_t i = hs; i < he; ++i)
            for (int64_t j = ws; j < we; ++j) {
              const int64_t idx = i * W + j;
              if (Xc[idx] > m) { m = Xc[idx]; best = (int)idx; }
            }
          const int64_t o = ((k * C + c) * ph + u) * pw + v;
          O[o] = best < 0 ? 0.f : m;
          A[o] = best;
        }
      }
    }
  }
  return {out, arg};
}

at::Tensor bwd(at::Tensor g, at::Tensor arg, int64_t C, int64_t H, int64_t W) {
  auto gi = at::zeros({C, H, W}, g.options());
  const int64_t K = g.size(0), n = g.size(2) * g.size(3);
  const float* G = g.data_ptr<float>();
  const int* A = arg.data_ptr<int>();
  float* GI = gi.data_ptr<float>();
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t b = 0; b < n; ++b) {
        const int64_t o = (k * C + c) * n + b;
        if (A[o] >= 0) GI[c * H * W + A[o]] += G[o];
      }
  return gi;
}
"""


def cpp_roipool(build_dir: str):
    """Compile (or reuse from ``build_dir``) the reference C++ RoIPool; None without g++."""
    try:
        from torch.utils.cpp_extension import load_inline

        return load_inline(
            "jtsm_bench_roipool", cpp_sources=CPP, functions=["fwd", "bwd"],
            extra_cflags=["-O3"], build_directory=build_dir, verbose=False,
        )
    except Exception as exc:  # noqa: BLE001
        print(f"# C++ RoIPool skipped: {exc.__class__.__name__}: {str(exc)[:120]}")
        return None


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


def run(method: str, feat: torch.Tensor, props: ProposalTensors, ext) -> torch.Tensor:
    """One forward + backward; returns the feature gradient. ``<name>-torch``: the same op
    with the C kernel switched off (``JTSM_BINNEDMAX=0``), its pure-torch path."""
    if method.endswith("-torch"):
        old = os.environ.get("JTSM_BINNEDMAX")
        os.environ["JTSM_BINNEDMAX"] = "0"
        try:
            return run(method[: -len("-torch")], feat, props, ext)
        finally:
            if old is None:
                del os.environ["JTSM_BINNEDMAX"]
            else:
                os.environ["JTSM_BINNEDMAX"] = old
    s = 1.0 / STRIDE
    if method == "cpp-roipool":
        cb = cell_boxes(props.boxes, s).contiguous()
        out, arg = ext.fwd(feat[0].contiguous(), cb, OUT, OUT)
        return ext.bwd(torch.ones_like(out), arg, C, feat.shape[2], feat.shape[3])
    f = feat.detach().requires_grad_(True)
    if method == "moi":
        out = moi_pool(f, props, OUT, s, "code")
    elif method == "moi-tps":
        out = moi_tps_pool(f, props, OUT, s, 2, True)
    elif method == "roi-pool":
        out = roi_pool(f, props.boxes, OUT, s)
    elif method == "roi-align":
        out = roi_align(f, props.boxes, OUT, s, 2, True)
    elif method == "tv-roipool":
        import torchvision.ops as tvo

        out = tvo.roi_pool(f, [props.boxes], OUT, s)
    elif method == "tv-roialign":
        import torchvision.ops as tvo

        out = tvo.roi_align(f, [props.boxes], OUT, s, 2, True)
    else:
        raise ValueError(method)
    out.backward(torch.ones_like(out))
    return f.grad


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


def measure_memory(method: str, path: str, build_dir: str) -> dict:
    """Peak RSS rise of one forward + backward, in a fresh process that only loaded inputs."""
    torch.set_num_threads(1)
    data = torch.load(path, weights_only=True)
    props = ProposalTensors.from_dict(data["props"])
    feat = data["feat"]
    n = len(props)
    ext = cpp_roipool(build_dir) if method == "cpp-roipool" else None
    _reset_peak()
    before = _rss_mb()
    run(method, feat, props, ext)
    peak = _peak_mb()
    out_mb = n * C * OUT * OUT * 4 / 2**20
    return {"peak_rise_mb": peak - before, "output_mb": out_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proposals", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mem", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem:
        print(json.dumps(measure_memory(*args.mem)))
        return
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="jtsm_bench_")
    ext = cpp_roipool(tmp)
    methods = ["moi", "moi-tps", "roi-pool", "roi-align"] + (["cpp-roipool"] if ext else [])
    from jtsm.ops.binned_max import kernel_available

    if kernel_available():  # the same ops on their torch path, for the kernel's ratio
        methods[3:3] = ["moi-torch", "roi-pool-torch"]
    else:
        print("# jtsm.ops._binnedmax not built: moi and roi-pool run their torch path")
    try:
        import torchvision  # noqa: F401

        methods += ["tv-roipool", "tv-roialign"]
    except Exception as exc:  # noqa: BLE001
        print(f"# torchvision not importable ({exc.__class__.__name__}): its ops skipped")
    n = args.proposals
    props = make_proposals(n)
    feat = torch.randn(1, C, H // STRIDE, W // STRIDE,
                       generator=torch.Generator().manual_seed(1))
    fh, fw = feat.shape[2:]
    cb = cell_boxes(props.boxes, 1 / STRIDE)
    mean_box = float((cb[:, 2:] - cb[:, :2]).prod(1).float().mean())
    print(f"# {n} proposals, {C} channels, {fh}x{fw} map, mean box {mean_box:.0f} cells, "
          f"torch {torch.__version__}, 1 thread")
    t0 = time.perf_counter()
    superpixel_cell_incidence(props.superpixels, props.num_superpixels, (fh, fw), 1 / STRIDE)
    print(f"# superpixel-cell incidence (inside moi, once per image): "
          f"{1e3 * (time.perf_counter() - t0):.0f} ms")
    if ext:
        grad_cpp = run("cpp-roipool", feat, props, ext)
        grad_ours = run("roi-pool", feat, props, ext)
        print(f"# our RoIPool gradient equals the C++ one: {torch.allclose(grad_cpp, grad_ours)}")
    times = {}
    for m in methods:
        run(m, feat, props, ext)  # warm-up
        ts = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            run(m, feat, props, ext)
            ts.append(time.perf_counter() - t)
        times[m] = min(ts)
    ref = "cpp-roipool" if ext else "roi-pool"
    print(f"\n{'method':<14}{'fwd+bwd ms':>12}{'vs ' + ref:>18}")
    for m in methods:
        print(f"{m:<14}{1e3 * times[m]:>12.0f}{times[m] / times[ref]:>17.2f}x")

    print(f"\n{'method':<14}{'P':>6}{'peak rise MB':>14}{'output MB':>11}{'working MB':>12}")
    counts = [500, 1000, 2000, 4000]
    pooled = [m for m in ("moi", "moi-torch") if m in methods]  # at every proposal count
    rows = [(m, k) for m in pooled for k in counts] + [(m, n) for m in methods
                                                         if m not in pooled]
    big = make_proposals(max(counts))
    for m, k in rows:
        path = f"{tmp}/inputs_{k}.pt"
        sub = ProposalTensors(big.superpixels, big.crow[: k + 1], big.col[: int(big.crow[k])],
                              big.boxes[:k], big.scores[:k], big.num_superpixels)
        torch.save({"props": sub.as_dict(), "feat": feat}, path)
        res = subprocess.run(
            [sys.executable, __file__, "--mem", m, path, tmp], capture_output=True, text=True
        )
        if res.returncode != 0:
            print(f"{m:<14}{k:>6}  failed: {res.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        # output + its gradient (ones_like) are the op's unavoidable P x C x 7 x 7 tensors
        work = r["peak_rise_mb"] - 2 * r["output_mb"]
        print(f"{m:<14}{k:>6}{r['peak_rise_mb']:>14.0f}{r['output_mb']:>11.0f}{work:>12.0f}")


if __name__ == "__main__":
    main()
