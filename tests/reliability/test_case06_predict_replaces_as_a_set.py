"""Case 6: a ``predict`` that failed on a bad image deleted the previous good ``panoptic.json``,
``instances.json`` and ``detections.json`` of its out folder and left old PNGs among new ones.
Now the outputs are written beside the folder and replace the previous ones as a set."""

from __future__ import annotations

import shutil

from conftest import jtsm, tree


def test_failed_predict_leaves_previous_results_whole(tmp_path, rel_data, rel_run):
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((rel_data / "images").glob("val_*.jpg")):
        shutil.copy(p, images / p.name)
    out = tmp_path / "pred"
    code, text = jtsm("predict", "--run", rel_run, "--images", images, "--out", out, "-q")
    assert code == 0, text
    before = tree(out)
    assert {"panoptic.json", "instances.json", "detections.json", "meta.json"} <= set(before)
    (images / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    code, text = jtsm("predict", "--run", rel_run, "--images", images, "--out", out, "-q",
                      "--overwrite")
    assert code == 1 and "zz_broken.jpg" in text
    assert tree(out) == before  # the previous results, whole, and nothing else
    assert not (tmp_path / ".pred.partial").exists()
    # a smaller successful run leaves no PNG of the larger one
    (images / "zz_broken.jpg").unlink()
    (images / sorted(p.name for p in images.iterdir())[0]).unlink()
    code, text = jtsm("predict", "--run", rel_run, "--images", images, "--out", out, "-q",
                      "--overwrite")
    assert code == 0, text
    assert len(list((out / "panoptic").glob("*.png"))) == 2
