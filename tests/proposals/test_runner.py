"""The proposal runner: image listing, shards, resume after a kill, bad images, the pool."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jtsm.errors import ConfigError, DataError
from jtsm.fileio import write_png
from jtsm.proposals.runner import (
    RunSummary,
    list_images,
    parse_shard,
    run_proposals,
    select_shard,
    update_index,
)
from jtsm.proposals.store import ProposalStore


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for name in ["a.png", "b.png", "sub/c.png", "sub/d.jpg.png", "e.png"]:
        write_png(root / name, rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    write_png(root / ".hidden" / "x.png", np.zeros((4, 4, 3), np.uint8))
    return root


def test_list_images_folder_and_dataset(image_dir, tmp_path):
    names = [i.name for i in list_images(image_dir)]
    assert names == ["a.png", "b.png", "e.png", "sub/c.png", "sub/d.jpg.png"]
    # an output folder inside the image folder (with --viz pictures) is not searched
    assert [i.name for i in list_images(image_dir, exclude=image_dir / "sub")] == names[:3]
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"images": [{"id": 1, "file_name": "sub/c.png"},
                                         {"id": 2, "file_name": "b.png"}]}))
    assert [i.name for i in list_images(image_dir, ds)] == ["sub/c.png", "b.png"]
    ds.write_text(json.dumps({"images": [{"id": 1, "file_name": "../../etc/passwd"}]}))
    with pytest.raises(DataError, match="escapes"):
        list_images(image_dir, ds)
    with pytest.raises(DataError, match="no such image folder"):
        list_images(tmp_path / "nope")


def test_shards_partition_the_images(image_dir):
    items = list_images(image_dir)
    parts = [select_shard(items, *parse_shard(f"{i}/3")) for i in range(3)]
    assert sorted(x.name for p in parts for x in p) == sorted(x.name for x in items)
    assert parse_shard(None) == (0, 1)
    for bad in ["3/3", "x/2", "1", "-1/2"]:
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_resume_recomputes_only_missing_files(image_dir, tmp_path):
    out = tmp_path / "props"
    items = list_images(image_dir)
    first = list(run_proposals(items, out, "felzenszwalb", 50, workers=1))
    assert sorted(r.status for r in first) == ["done"] * 5
    store = ProposalStore(out)
    mtimes = {i.name: store.path_for(i.name).stat().st_mtime_ns for i in items}
    store.path_for("b.png").unlink()
    store.path_for("sub/c.png").unlink()
    again = {r.name: r for r in run_proposals(items, out, "felzenszwalb", 50, workers=1)}
    assert {n for n, r in again.items() if r.status == "done"} == {"b.png", "sub/c.png"}
    assert {n for n, r in again.items() if r.status == "skipped"} == {"a.png", "e.png",
                                                                      "sub/d.jpg.png"}
    for name in ["a.png", "e.png", "sub/d.jpg.png"]:
        assert store.path_for(name).stat().st_mtime_ns == mtimes[name]
    assert all(store.exists(i.name) for i in items)
    ps = store.load("b.png", expect_size=(24, 32))
    assert 0 < len(ps) <= 50
    summary = RunSummary(list(again.values())).as_dict()
    assert summary["images"] == 5 and summary["computed"] == 2 and summary["skipped"] == 3


def test_bad_image_is_reported_not_fatal_and_pool_works(image_dir, tmp_path):
    (image_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "props"
    results = list(run_proposals(list_images(image_dir), out, "felzenszwalb", 20, workers=2))
    bad = [r for r in results if r.status == "bad"]
    assert [r.name for r in bad] == ["broken.png"]
    assert "broken.png" in bad[0].error
    assert sum(r.status == "done" for r in results) == 5
    path = update_index(out, results, (1, 2))
    assert path.name == "index.shard1-of-2.json"
    idx = ProposalStore(out).index()
    assert set(idx) == {"a.png", "b.png", "e.png", "sub/c.png", "sub/d.jpg.png"}
    assert idx["sub/c.png"]["file"] == "sub/c.png.npz"
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left
    assert os.path.exists(out / "sub" / "d.jpg.png.npz")


def test_unknown_method_fails_early(image_dir, tmp_path):
    from jtsm.errors import PluginError

    with pytest.raises(PluginError, match="unknown proposal method 'nope'"):
        list(run_proposals(list_images(image_dir), tmp_path, "nope"))



def _whole(image):
    from jtsm.structures import ProposalSet

    return ProposalSet.from_masks(np.ones((1, *image.shape[:2]), bool), [1.0])


def _dies(image, *, image_path=None, **_):
    if str(image_path).endswith("b.png"):
        os._exit(3)
    return _whole(image)


def _raises(image, *, image_path=None):  # no **options: gets no max_proposals
    if str(image_path).endswith("e.png"):
        raise RuntimeError("boom")
    return _whole(image)


def _register_test_generators():
    """Generators that misbehave on purpose (registered in-process; forked workers see them)."""
    from types import SimpleNamespace

    from jtsm.hookspecs import hookimpl
    from jtsm.plugins import ProposalGenerator, get_plugin_manager

    @hookimpl
    def register_proposal_generators(register):
        register(ProposalGenerator("dies", _dies))
        register(ProposalGenerator("raises", _raises))
        register(ProposalGenerator("wrong-size", lambda image, **_: _whole(image[1:])))

    plugin = SimpleNamespace(register_proposal_generators=register_proposal_generators)
    get_plugin_manager().register(plugin, name="test-generators")


def test_crashing_method_and_dying_worker_name_the_image(image_dir, tmp_path):
    from jtsm.errors import JtsmError

    _register_test_generators()
    items = list_images(image_dir)
    with pytest.raises(JtsmError, match=r"e\.png: method 'raises' failed \(RuntimeError: boom"):
        list(run_proposals(items, tmp_path / "r", "raises", workers=1))
    assert ProposalStore(tmp_path / "r").exists("a.png")  # done before the crash: kept
    with pytest.raises(JtsmError, match=r"worker process died .*one of: .*b\.png"):
        list(run_proposals(items, tmp_path / "d", "dies", workers=2))


def test_make_proposals_cleans_and_checks_the_size():
    from jtsm.errors import JtsmError
    from jtsm.proposals import make_proposals

    img = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    ps = make_proposals(img, "felzenszwalb", max_proposals=7, k=20)
    assert len(ps) == 7 and ps.image_size == (30, 40)
    assert np.all(np.diff(ps.scores) <= 0)
    _register_test_generators()
    with pytest.raises(JtsmError, match=r"x\.png: method 'wrong-size' returned .* \(29, 40\)"):
        make_proposals(img, "wrong-size", image_path="x.png")
