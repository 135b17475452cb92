"""benchmarks/generalise.py's per-class report (the pipeline itself is the demo's, tested there)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from generalise import main, per_class_table, thing_recall

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.synth import SynthConfig, write_synth_dataset
from jtsm.data.synth_photo import PHOTO_THINGS, PhotoConfig, photo_categories
from jtsm.proposals.store import ProposalStore
from jtsm.structures import ProposalSet


def _store(data, out, perfect: bool):
    """Proposals for the train images: every ground-truth segment exactly (``perfect``) or
    one proposal covering the whole image."""
    ds = load_panoptic_json(data / "annotations/panoptic_train.json")
    store = ProposalStore(out)
    counts: dict[str, int] = {}
    for im in ds.images:
        seg = ds.read(im["id"])
        ids = sorted(np.unique(seg.ids).tolist())
        superpixels = np.searchsorted(ids, seg.ids).astype(np.int32)
        member = np.eye(len(ids), dtype=bool) if perfect else np.ones((1, len(ids)), bool)
        store.save(im["file_name"], ProposalSet(superpixels, sp.csr_matrix(member)))
        for s in seg.segments:
            if s["category_id"] <= len(PHOTO_THINGS):
                name = PHOTO_THINGS[s["category_id"] - 1]
                counts[name] = counts.get(name, 0) + 1
    return counts


def test_thing_recall_per_class(tmp_path):
    data = tmp_path / "d"
    write_synth_dataset(data, 6, 0, PhotoConfig(height=64, width=96), seed=1)
    counts = _store(data, tmp_path / "exact", perfect=True)
    _store(data, tmp_path / "whole", perfect=False)
    exact = thing_recall(data / "annotations/panoptic_train.json", tmp_path / "exact")
    whole = thing_recall(data / "annotations/panoptic_train.json", tmp_path / "whole")
    assert set(exact) == set(counts) == set(whole)  # thing classes only, those that occur
    for name, n in counts.items():
        assert exact[name] == {"recall@0.5": 1.0, "n": n}
        assert whole[name] == {"recall@0.5": 0.0, "n": n}  # a thing is far under half an image


def test_per_class_table_marks_what_does_not_apply():
    cats = photo_categories(PhotoConfig(things=("lamp", "bottle"), stuff=("road", "sky")))
    r = {"pq": {"per_class": {"lamp": {"pq": 0.5}, "road": {"pq": 0.75}}},
         "pq_mined": {"per_class": {"lamp": {"pq": 0.25}, "road": {"pq": 0.5}}},
         "corloc": {"per_class": {"lamp": 0.8}}}
    rows = per_class_table(r, cats, {"lamp": {"recall@0.5": 0.9, "n": 3}})
    assert rows[2:] == ["| lamp | thing | 50.0 | 25.0 | 80.0 | 90.0 |",
                        "| bottle | thing | - | - | - | - |",
                        "| road | stuff | 75.0 | 50.0 | - | - |",
                        "| sky | stuff | - | - | - | - |"]


def test_refuses_data_of_another_style(tmp_path, capsys):
    write_synth_dataset(tmp_path / "data", 1, 1, SynthConfig(height=48, width=48), seed=0)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["--out", str(tmp_path), "--style", "photo", "--quick"]) == 1
    err = capsys.readouterr().err
    assert "panoptic_val.json has the classes disc" in err and "photo style" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no stage ran
