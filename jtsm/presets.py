"""Named config presets (``--set`` style overrides over :class:`jtsm.config.Config`).

``cpu`` is the from-scratch CPU recipe the demo trains with; ``examples/configs/synth.toml`` is
the same preset as a file (a test keeps them equal). ``cpu-refine`` is what ``jtsm refine`` sets
over such a run (``examples/configs/synth_refine.toml``). The ``-quick`` ones are smoke-test
budgets.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

CPU: dict[str, Any] = {
    "proposals": "selective-search",
    "backbone.name": "tiny", "backbone.norm": "bn", "backbone.stride": 8,
    "backbone.precision": "auto",
    "warmup.iters": 2000, "warmup.batch": 8, "warmup.items": 2, "warmup.optimizer": "adamw",
    "warmup.lr": 1e-3, "warmup.stride": 16, "warmup.whiten_images": 200,
    "mining.pooling": "moi", "mining.pool_size": 7, "mining.compensation": "code",
    "mining.fc_dim": 256, "mining.dropout": 0.5, "mining.refine_heads": 4,
    "mining.train_backbone": False,
    "input.train_scales": [112, 128, 144], "input.test_scales": [128],
    "input.max_proposals": 300, "input.min_proposal_area": 0.01,
    "solver.optimizer": "adamw", "solver.lr": 1e-4, "solver.ims_per_batch": 1,
    "solver.max_iter": 2200, "solver.warmup_iters": 20, "solver.steps": [1800],
    "solver.checkpoint_period": 500,
}

CPU_QUICK: dict[str, Any] = {
    **CPU,
    "warmup.iters": 40, "warmup.batch": 4, "solver.max_iter": 60, "solver.warmup_iters": 10,
    "solver.steps": [50], "solver.checkpoint_period": 50, "input.max_proposals": 200,
    "input.train_scales": [96], "input.test_scales": [96], "mining.fc_dim": 64,
}

# ``jtsm refine`` over a run mined with ``cpu``: the refine schedule (solver.*) and CPU-sized
# refinement branches (the paper's are 256 channels wide).
CPU_REFINE: dict[str, Any] = {
    "refine.mask_channels": 64, "refine.mask_convs": 4, "refine.semantic_channels": 64,
    "refine.semantic_convs": 2, "refine.mask_rois": 32, "refine.head_lr_mult": 10.0,
    "refine.snap": "superpixels",
    "solver.optimizer": "adamw", "solver.lr": 1e-4, "solver.ims_per_batch": 1,
    "solver.max_iter": 400, "solver.warmup_iters": 20, "solver.steps": [320],
    "solver.checkpoint_period": 200,
}

CPU_REFINE_QUICK: dict[str, Any] = {
    **CPU_REFINE, "refine.mask_channels": 16, "refine.semantic_channels": 16,
    "solver.max_iter": 40, "solver.steps": [30], "solver.checkpoint_period": 40,
}

PRESETS: dict[str, dict[str, Any]] = {"cpu": CPU, "cpu-quick": CPU_QUICK,
                                      "cpu-refine": CPU_REFINE,
                                      "cpu-refine-quick": CPU_REFINE_QUICK}
