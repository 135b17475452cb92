"""Case 12: ``predict --out`` into a folder holding another run's predictions of other images
replaced them without a word (exit 0), and a folder inside the image folder was read back as
images on the next run. Now predict follows every other stage: the same job is left as it is,
another job is refused naming the difference unless ``--overwrite``, and an out folder equal to
or inside the image folder or the proposal store is refused before any work."""

from __future__ import annotations

import json
import shutil

from conftest import jtsm, tree


def _images(tmp_path, rel_data, names):
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(rel_data / "images" / name, folder / name)
    return folder


def test_another_job_is_refused_and_overwrite_replaces(tmp_path, rel_data, rel_run):
    one = tmp_path / "one.jpg"
    shutil.copy(rel_data / "images/val_000000.jpg", one)
    out = tmp_path / "pred"
    code, text = jtsm("predict", "--run", rel_run, "--images", one, "--out", out, "-q")
    assert code == 0, text
    before = tree(out)
    other = tmp_path / "other.jpg"
    shutil.copy(rel_data / "images/val_000001.jpg", other)
    code, text = jtsm("predict", "--run", rel_run, "--images", other, "--out", out, "-q")
    assert code == 1
    assert "holds another prediction" in text and "input images" in text
    assert "--overwrite" in text and "Traceback" not in text
    assert tree(out) == before  # nothing of the first job's outputs changed
    code, text = jtsm("predict", "--run", rel_run, "--images", other, "--out", out, "-q",
                      "--overwrite")
    assert code == 0, text
    files = [im["file_name"] for im in json.loads((out / "panoptic.json").read_text())["images"]]
    assert files == ["other.jpg"]


def test_the_same_job_again_is_left_as_it_is(tmp_path, rel_data, rel_run):
    images = _images(tmp_path, rel_data, ["val_000000.jpg", "val_000001.jpg"])
    out = tmp_path / "pred"
    code, text = jtsm("predict", "--run", rel_run, "--images", images, "--out", out, "-q")
    assert code == 0, text
    before = {p: (out / p).stat().st_mtime_ns for p in tree(out)}
    code, text = jtsm("predict", "--run", rel_run, "--images", images, "--out", out, "-q")
    assert code == 0, text
    assert "already holds this job's predictions (2 images)" in text
    assert {p: (out / p).stat().st_mtime_ns for p in tree(out)} == before
    # an image replaced in place (same name, other bytes) is another job
    shutil.copy(rel_data / "images/val_000002.jpg", images / "val_000001.jpg")
    code, text = jtsm("predict", "--run", rel_run, "--images", images, "--out", out, "-q")
    assert code == 1 and "same path, other content" in text


def test_out_inside_the_images_or_the_store_is_refused(tmp_path, rel_data, rel_run):
    images = _images(tmp_path, rel_data, ["val_000000.jpg"])
    for out in (images, images / "pred"):
        code, text = jtsm("predict", "--run", rel_run, "--images", images, "--out", out, "-q")
        assert code == 1 and "--images" in text, text
    assert sorted(p.name for p in images.iterdir()) == ["val_000000.jpg"]
    props = rel_data / "props"
    before = tree(props)
    code, text = jtsm("predict", "--run", rel_run, "--images", images, "--proposals", props,
                      "--out", props / "pred", "-q")
    assert code == 1 and "--proposals" in text
    assert tree(props) == before


def test_a_folder_of_other_files_named_like_outputs_is_refused(tmp_path, rel_data, rel_run):
    """A user's folder that happens to hold a ``viz/`` of their own is not a prediction."""
    images = _images(tmp_path, rel_data, ["val_000000.jpg"])
    out = tmp_path / "holiday"
    (out / "viz").mkdir(parents=True)
    (out / "viz/holiday.jpg").write_bytes(b"my photo")
    code, text = jtsm("predict", "--run", rel_run, "--images", images, "--out", out, "-q")
    assert code == 1 and "--overwrite" in text
    assert (out / "viz/holiday.jpg").read_bytes() == b"my photo"
