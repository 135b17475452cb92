"""jtsm: panoptic segmentation learned from image-level tags.

``from jtsm import Predictor`` gives a trained run as a Python function
(:class:`jtsm.predictor.Predictor`); it is imported on first use, so ``import jtsm`` stays
light for the command line.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

__all__ = ["Prediction", "Predictor", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Predictor", "Prediction"):
        from jtsm import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'jtsm' has no attribute {name!r}")
