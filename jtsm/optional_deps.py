"""Third-party packages only some functions need, imported when those functions run.

jtsm imports, trains and predicts panoptic PNGs without them, so that it runs beside a Python
that has torch but not every package of jtsm's requirements (an offline GPU node). A function
that needs one and does not find it stops with one line naming the package to install:

- ``pycocotools``: COCO RLE masks (``instances.json`` of ``jtsm predict``, mask areas of a
  panoptic ground truth) and ``COCOeval`` (``jtsm eval --metric ap``);
- ``cv2.ximgproc`` (``opencv-contrib-python``): the Felzenszwalb graph segmentation under the
  ``selective-search`` and ``felzenszwalb`` proposal methods.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from jtsm.errors import JtsmError

__all__ = ["MissingDependencyError", "require", "require_ximgproc"]


class MissingDependencyError(JtsmError):
    """An optional package a function needs is not installed."""


def require(module: str, package: str, needed_for: str) -> ModuleType:
    """Import ``module`` (from pip package ``package``) for ``needed_for``.

    Raises:
        MissingDependencyError: it cannot be imported; the message names the package.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{needed_for} needs {package}, which is not installed here "
            f"(pip install {package})") from None


def require_ximgproc(needed_for: str) -> ModuleType:
    """OpenCV's contrib module ``cv2.ximgproc`` for ``needed_for``.

    Raises:
        MissingDependencyError: this OpenCV has no ``ximgproc`` (opencv-python without contrib).
    """
    import cv2

    xi = getattr(cv2, "ximgproc", None)
    if xi is None:
        raise MissingDependencyError(
            f"{needed_for} needs opencv-contrib-python (cv2.ximgproc); this OpenCV "
            f"{cv2.__version__} has no contrib modules (pip install opencv-contrib-python)")
    return xi
