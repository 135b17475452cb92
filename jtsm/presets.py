"""Named config presets (``--set`` style overrides over :class:`jtsm.config.Config`).

``cpu`` is the from-scratch CPU recipe the demo trains with; ``examples/configs/synth.toml`` is
the same preset as a file (a test keeps them equal). ``cpu-quick`` is a smoke-test budget.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

CPU: dict[str, Any] = {
    "proposals": "selective-search",
    "backbone.name": "tiny", "backbone.norm": "bn", "backbone.stride": 8,
    "warmup.iters": 600, "warmup.batch": 8, "warmup.items": 2, "warmup.optimizer": "adamw",
    "warmup.lr": 1e-3,
    "mining.pooling": "moi", "mining.pool_size": 7, "mining.compensation": "code",
    "mining.fc_dim": 256, "mining.dropout": 0.5, "mining.refine_heads": 4,
    "input.train_scales": [112, 128, 144], "input.test_scales": [128],
    "input.max_proposals": 300, "input.min_proposal_area": 0.02,
    "solver.optimizer": "adamw", "solver.lr": 3e-5, "solver.ims_per_batch": 1,
    "solver.max_iter": 2500, "solver.warmup_iters": 20, "solver.steps": [2000],
    "solver.checkpoint_period": 500,
}

CPU_QUICK: dict[str, Any] = {
    **CPU,
    "warmup.iters": 40, "warmup.batch": 4, "solver.max_iter": 60, "solver.warmup_iters": 10,
    "solver.steps": [50], "solver.checkpoint_period": 50, "input.max_proposals": 200,
    "input.train_scales": [96], "input.test_scales": [96], "mining.fc_dim": 64,
}

PRESETS: dict[str, dict[str, Any]] = {"cpu": CPU, "cpu-quick": CPU_QUICK}
