"""Built-in plugin ``mcg``: import Berkeley MCG proposal files (``.mat``, v5/v7 or v7.3).

Option ``mcg_dir`` (required; or the environment variable ``JTSM_MCG_DIR``): the folder of
per-image files named like the image (``000123.jpg`` -> ``mcg_dir/000123.mat``). Top 4000 kept,
duplicate and empty proposals dropped.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jtsm.errors import DataError
from jtsm.hookspecs import hookimpl
from jtsm.plugins import ProposalGenerator
from jtsm.structures import ProposalSet


def generate(
    image: np.ndarray, *, image_path: Any = None, mcg_dir: Any = None, **_: Any
) -> ProposalSet:
    """The MCG proposals of the image at ``image_path``, checked against the image's size."""
    from jtsm.proposals.mcg import mcg_path_for, read_mcg

    mcg_dir = mcg_dir or os.environ.get("JTSM_MCG_DIR")
    if not mcg_dir:
        raise DataError("method 'mcg' needs the MCG folder: --opt mcg_dir=DIR (or JTSM_MCG_DIR)")
    if image_path is None:
        raise DataError("method 'mcg' needs the image's path to find its .mat file")
    path = mcg_path_for(mcg_dir, image_path)
    ps = read_mcg(path)
    if ps.image_size != tuple(image.shape[:2]):
        (h, w), (ih, iw) = ps.image_size, image.shape[:2]
        raise DataError(f"{path}: MCG superpixels are {w}x{h} but {image_path} is {iw}x{ih}")
    return ps


@hookimpl
def register_proposal_generators(register: Any) -> None:
    register(
        ProposalGenerator(
            "mcg", generate, "Berkeley MCG .mat files (v5/v7.3); option: mcg_dir=DIR"
        )
    )
