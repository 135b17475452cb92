"""Facts about the machine this process runs on."""

from __future__ import annotations

import os

__all__ = ["available_cores"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, e.g. a cluster
    job's allocation, not the whole machine); at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
