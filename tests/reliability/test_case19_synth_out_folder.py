"""Case 19: ``data synth myproj`` replaced ``myproj/images/`` and ``myproj/annotations/`` as a
whole, so a folder of the user's own photos there was deleted. Now synth writes into a new
folder or one holding a previous synth dataset (its record ``OUT/.jtsm-synth`` lists the files
it wrote); any other folder is refused with one line. A rerun replaces the files of the previous
dataset as a set; ``--overwrite`` writes into a folder synth did not make, replacing files of
the same names; a file synth did not write is never removed."""

from __future__ import annotations

import json

from conftest import jtsm, tree


def _synth(out, *more):
    return jtsm("data", "synth", out, "--size", 32, 32, "-q", *more)


def _one_line(code: int, text: str, *needles: str) -> None:
    lines = text.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), text
    for needle in needles:
        assert needle in lines[0], text


def test_a_folder_synth_did_not_make_is_refused_and_never_emptied(tmp_path):
    proj = tmp_path / "myproj"
    (proj / "images").mkdir(parents=True)
    (proj / "images/holiday.jpg").write_bytes(b"my photo")
    (proj / "images/train_000000.jpg").write_bytes(b"my photo named like a synth image")
    before = tree(proj)
    _one_line(*_synth(proj, "--train", 2, "--val", 1),
              f"{proj}: holds files jtsm data synth did not write", "--overwrite")
    assert tree(proj) == before
    code, text = _synth(proj, "--train", 2, "--val", 1, "--overwrite")
    assert code == 0, text
    after = tree(proj)
    assert after["images/holiday.jpg"] == b"my photo"  # never removed
    assert after["images/train_000000.jpg"] != before["images/train_000000.jpg"]  # --overwrite
    gt = json.loads((proj / "annotations/panoptic_train.json").read_text())
    assert [im["file_name"] for im in gt["images"]] == ["train_000000.jpg", "train_000001.jpg"]


def test_a_rerun_replaces_its_own_dataset_and_keeps_the_rest(tmp_path):
    proj = tmp_path / "myproj"
    code, text = _synth(proj, "--train", 3, "--val", 1)
    assert code == 0, text
    (proj / "props").mkdir()
    (proj / "props/keep.npz").write_bytes(b"a store")
    (proj / "images/holiday.jpg").write_bytes(b"added later")
    code, text = _synth(proj, "--train", 1, "--val", 1, "--seed", 3)  # no --overwrite needed
    assert code == 0, text
    files = tree(proj)
    assert sorted(p for p in files if p.startswith("images/")) == [
        "images/holiday.jpg", "images/train_000000.jpg", "images/val_000000.jpg"]
    assert files["props/keep.npz"] == b"a store" and files["images/holiday.jpg"] == b"added later"
    # an image of its own that the user changed is theirs now: not replaced without --overwrite
    (proj / "images/val_000000.jpg").write_bytes(b"retouched")
    _one_line(*_synth(proj, "--train", 1, "--val", 1),
              f"{proj / 'images/val_000000.jpg'}", "not written by jtsm data synth")
    assert (proj / "images/val_000000.jpg").read_bytes() == b"retouched"
