"""Case 2: ``x.jpg`` and ``x.png`` in one folder both became ``x.npz``; loading handed one
image the other's proposals. Now a store keys files by the whole relative name and ``load``
checks the name stored in the file."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from jtsm.errors import DataError
from jtsm.proposals.runner import list_images, run_proposals
from jtsm.proposals.store import ProposalStore


def test_same_stem_other_extension_get_their_own_files(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "x.jpg"), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "x.png"), rng.integers(0, 255, (30, 60, 3), dtype=np.uint8))
    results = list(run_proposals(list_images(images), tmp_path / "props", "felzenszwalb", 50,
                                 workers=1))
    assert sorted(r.status for r in results) == ["done", "done"]
    store = ProposalStore(tmp_path / "props")
    assert store.path_for("x.jpg") != store.path_for("x.png")
    assert store.load("x.jpg").image_size == (40, 50)
    assert store.load("x.png").image_size == (30, 60)
    # a file holding another image's proposals (copied, renamed) is refused on load
    shutil.copy(store.path_for("x.jpg"), store.path_for("x.png"))
    with pytest.raises(DataError, match=r"holds the proposals of 'x.jpg', not of 'x.png'"):
        store.load("x.png")
