"""Case 22: reuse by name, not content. ``photo.jpg`` replaced by another image of the same
size: ``proposals`` said "1 already done" and predict used the old image's proposals; a
``model_final.pt`` copied from another run of the same config loaded silently. Now each
proposal file records what its image file held (size, modification time, content digest): a
changed image is remade by ``proposals`` and refused by the stages that read the store; a run
records its weights' digest in ``meta.json`` and refuses weights it did not write."""

from __future__ import annotations

import json
import os
import shutil

from conftest import jtsm

from jtsm.fileio import read_image
from jtsm.proposals.store import ProposalStore


def _store(tmp_path, rel_data):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    shutil.copy(rel_data / "images/val_000000.jpg", imgs / "photo.jpg")
    code, text = jtsm("proposals", "--images", imgs, "--out", tmp_path / "props",
                      "--method", "felzenszwalb", "--workers", "1", "-q", "--json")
    assert code == 0, text
    return imgs, tmp_path / "props"


def _replace_keeping_size_and_time(path, other):
    st = path.stat()
    shutil.copy(other, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_replaced_image_is_remade_not_reused(tmp_path, rel_data):
    imgs, props = _store(tmp_path, rel_data)
    before = (props / "photo.jpg.npz").read_bytes()
    os.utime(imgs / "photo.jpg", ns=(1, 10**18))  # touched, same bytes: kept (digest equal)
    code, text = jtsm("proposals", "--images", imgs, "--out", props, "--method",
                      "felzenszwalb", "--workers", "1", "-q", "--json")
    assert code == 0 and json.loads(text)["skipped"] == 1, text
    other = rel_data / "images/val_000001.jpg"
    assert read_image(other).shape == read_image(imgs / "photo.jpg").shape  # same size
    shutil.copy(other, imgs / "photo.jpg")
    code, text = jtsm("proposals", "--images", imgs, "--out", props, "--method",
                      "felzenszwalb", "--workers", "1", "-q", "--json")
    assert code == 0 and json.loads(text)["computed"] == 1, text
    assert (props / "photo.jpg.npz").read_bytes() != before
    assert ProposalStore(props).is_current("photo.jpg", imgs / "photo.jpg", verify=True)


def test_verify_sees_a_change_that_kept_size_and_time(tmp_path, rel_data):
    imgs, props = _store(tmp_path, rel_data)
    candidates = sorted((rel_data / "images").glob("val_*.jpg"))
    size = (imgs / "photo.jpg").stat().st_size
    same = [p for p in candidates if p.stat().st_size == size and
            p.read_bytes() != (imgs / "photo.jpg").read_bytes()]
    if not same:  # forge one: same byte count, other bytes
        data = bytearray((imgs / "photo.jpg").read_bytes())
        data[-3] ^= 0xFF
        forged = tmp_path / "forged.jpg"
        forged.write_bytes(bytes(data))
        same = [forged]
    _replace_keeping_size_and_time(imgs / "photo.jpg", same[0])
    args = ["proposals", "--images", imgs, "--out", props, "--method", "felzenszwalb",
            "--workers", "1", "-q", "--json"]
    code, text = jtsm(*args)
    assert code == 0 and json.loads(text)["skipped"] == 1  # size and time alone: kept
    code, text = jtsm(*args, "--verify")
    assert code == 0 and json.loads(text)["computed"] == 1, text


def test_stages_refuse_proposals_of_an_earlier_image(tmp_path, rel_data, rel_run):
    imgs, props = _store(tmp_path, rel_data)
    shutil.copy(rel_data / "images/val_000001.jpg", imgs / "photo.jpg")
    code, text = jtsm("predict", "--run", rel_run, "--images", imgs, "--proposals", props,
                      "--out", tmp_path / "pred", "-q")
    assert code == 1 and "Traceback" not in text
    assert "photo.jpg.npz: made from an earlier version of" in text
    assert "rerun jtsm proposals" in text and not (tmp_path / "pred").exists()


def test_weights_from_another_run_are_refused(tmp_path, rel_data, rel_run):
    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    meta = json.loads((run / "meta.json").read_text())
    assert len(meta["weights_sha256"]) == 16
    import torch

    state = torch.load(run / "model_final.pt", weights_only=True)
    state = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, run / "model_final.pt")  # same shapes, another run's values
    one = tmp_path / "one.jpg"
    shutil.copy(rel_data / "images/val_000000.jpg", one)
    code, text = jtsm("predict", "--run", run, "--images", one, "--out", tmp_path / "p", "-q")
    assert code == 1 and "model_final.pt: not the weights this run wrote" in text
    code, text = jtsm("refine", "--run", run, "--pseudo", run / "mined/panoptic.json",
                      "--images", rel_data / "images", "--out", tmp_path / "r", "-q")
    assert code == 1 and "model_final.pt: not the weights this run wrote" in text
