"""A toy model and task for trainer tests (BatchNorm + dropout, so randomness matters)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ToyTask:
    """64 points in 2-D, 3 classes; an item is 8 consecutive points, jittered."""

    def __init__(self, seed: int = 0, fail_at: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(64, 2)).astype(np.float32)
        self.y = (np.arctan2(self.x[:, 1], self.x[:, 0]) > 0).astype(np.int64) + \
            (self.x[:, 0] > 1).astype(np.int64)
        self.calls = 0
        self.fail_at = fail_at

    def __len__(self) -> int:
        return len(self.x)

    def load(self, index: int, rng: np.random.Generator):
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise RuntimeError("simulated crash")
        idx = (index + np.arange(8)) % len(self.x)
        x = self.x[idx] + rng.normal(0, 0.05, size=(8, 2)).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(self.y[idx])


class ToyModel(nn.Module):
    """Two BatchNorms: an exponential (momentum 0.1) and a cumulative (momentum None) one."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                 nn.Dropout(0.3), nn.Linear(32, 16),
                                 nn.BatchNorm1d(16, momentum=None), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, item):
        x, y = item
        return {"ce": nn.functional.cross_entropy(self.net(x), y)}


def run(nproc_out: str, max_iter: int = 12, batch: int = 4) -> None:
    """Train the toy under the current process group; rank 0 saves the state (parameters and
    BatchNorm statistics)."""
    from jtsm.config import SolverConfig
    from jtsm.engine.distributed import is_main
    from jtsm.engine.trainer import train

    torch.set_num_threads(1)
    model = ToyModel()
    solver = SolverConfig(lr=0.1, max_iter=max_iter, ims_per_batch=batch, warmup_iters=2,
                          steps=[8])
    train(model, ToyTask(), solver, seed=3, run_dir=None)
    if is_main():
        torch.save(model.state_dict(), nproc_out)


class NanOnRank(ToyModel):
    """A toy whose loss turns NaN on one rank from its ``at``-th forward on."""

    def __init__(self, rank: int, at: int) -> None:
        super().__init__()
        self.nan_rank, self.at, self.calls = rank, at, 0

    def forward(self, item):
        from jtsm.engine.distributed import get_rank

        out = super().forward(item)
        self.calls += 1
        if get_rank() == self.nan_rank and self.calls >= self.at:
            out["ce"] = out["ce"] * float("nan")
        return out


def run_nan(out: str, nan_rank: int = 1, at: int = 5) -> None:
    """Train the toy with a NaN on rank ``nan_rank``; every rank writes the error it stopped
    with to ``out.rank<R>.txt`` and raises it again."""
    from pathlib import Path

    from jtsm.config import SolverConfig
    from jtsm.engine.distributed import get_rank
    from jtsm.engine.trainer import train

    torch.set_num_threads(1)
    solver = SolverConfig(lr=0.1, max_iter=12, ims_per_batch=4, warmup_iters=2, steps=[8])
    try:
        train(NanOnRank(nan_rank, at), ToyTask(), solver, seed=3, run_dir=None)
    except Exception as e:
        Path(f"{out}.rank{get_rank()}.txt").write_text(f"{type(e).__name__}: {e}")
        raise
