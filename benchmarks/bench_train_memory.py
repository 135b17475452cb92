"""Memory of a mining training step vs proposal count, and across iterations.

For 500 / 2000 / 4000 proposals on a 512x512 image (tiny backbone, stride 8, 7x7 pooling,
FC 256): peak RSS of a fresh process doing 30 training steps, and the RSS after steps 10 and
30 (it must not grow). MoIPool and RoIPool (the box baseline, ``torchvision.ops.roi_pool``)
run in the same invocation, each in its own subprocess so peaks do not mix; the ratio column
is MoIPool's peak over RoIPool's.

    python benchmarks/bench_train_memory.py [--proposals 500 2000 4000] [--iters 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

WORKER = r"""
import json, resource, sys
import numpy as np, scipy.sparse as sp, torch
from skimage.segmentation import felzenszwalb
import skimage.data, cv2
from jtsm.config import load_config
from jtsm.data.mining_dataset import MiningItem, to_tensor
from jtsm.engine.mine import MilTrainModule
from jtsm.modeling.build import build_model
from jtsm.structures import CategoryMap, ProposalSet
torch.set_num_threads(1)
n, pooling, iters = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
img = cv2.resize(skimage.data.astronaut(), (512, 512))
spx = felzenszwalb(img, scale=30, sigma=0.8, min_size=20)
s = int(spx.max()) + 1
rng = np.random.default_rng(0)
rows = np.repeat(np.arange(n), 12)
cols = rng.integers(0, s, n * 12)
ps = ProposalSet(spx, sp.csr_matrix((np.ones(n * 12, bool), (rows, cols)), shape=(n, s)),
                 rng.random(n))
cats = CategoryMap.from_coco([{"id": i + 1, "name": str(i), "isthing": int(i < 5)}
                              for i in range(9)])
cfg = load_config(overrides={"mining.pooling": pooling, "input.max_proposals": n})
w = MilTrainModule(build_model(cfg, cats))
opt = torch.optim.SGD(w.parameters(), lr=1e-3)
tags = torch.zeros(9); tags[[0, 6]] = 1
item = MiningItem(to_tensor(img), tags, ps, 1)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
out = {}
for it in range(iters):
    loss = sum(w(item).values()); opt.zero_grad(); loss.backward(); opt.step()
    if it + 1 == iters // 3:
        out["rss_early"] = rss()
out["rss_last"] = rss()
out["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run(n: int, pooling: str, iters: int) -> dict[str, float]:
    r = subprocess.run([sys.executable, "-c", WORKER, str(n), pooling, str(iters)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proposals", type=int, nargs="+", default=[500, 2000, 4000])
    ap.add_argument("--iters", type=int, default=30, help="training steps (>= 3)")
    args = ap.parse_args()
    early = f"RSS@{max(1, args.iters // 3)}"
    print(f"{'proposals':>9}  {'pooling':<9} {'peak MB':>8} {early:>8} "
          f"{'RSS@' + str(args.iters):>8} {'growth':>7} {'peak moi/roi':>13}")
    for n in args.proposals:
        res = {p: run(n, p, args.iters) for p in ("moi", "roi-pool")}
        for p, r in res.items():
            ratio = res["moi"]["peak"] / res["roi-pool"]["peak"] if p == "moi" else 1.0
            print(f"{n:>9}  {p:<9} {r['peak']:>8.0f} {r['rss_early']:>8.0f} "
                  f"{r['rss_last']:>8.0f} {r['rss_last'] - r['rss_early']:>+7.0f} {ratio:>13.2f}")


if __name__ == "__main__":
    main()
