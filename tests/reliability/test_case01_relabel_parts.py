"""Case 1: ``relabel --out P`` over another run's or another ``--evidence``'s parts reused them
("0 images (6 already done)") and returned the old labels. Now the folder records its job and
every part carries the job's digest: another job's folder is refused, ``--overwrite`` redoes it.
"""

from __future__ import annotations

import json

from conftest import jtsm

from jtsm.engine.relabel import run_relabel


def test_relabel_refuses_another_evidence_and_overwrite_redoes_it(tmp_path, rel_data, rel_run):
    out = tmp_path / "pseudo"
    first = run_relabel(rel_run, rel_data / "images", out, evidence="none", workers=1)
    assert first["relabelled"] == 6 and first["complete"]
    before = (out / "panoptic.json").read_bytes()
    code, text = jtsm("relabel", "--run", rel_run, "--images", rel_data / "images", "--out", out,
                      "--proposals", rel_data / "props", "--evidence", "superpixel-snap",
                      "--workers", 1, "-q")
    assert code == 1 and "Error:" in text and "evidence 'none' vs 'superpixel-snap'" in text
    assert "--overwrite replaces it" in text
    assert (out / "panoptic.json").read_bytes() == before  # nothing written
    code, text = jtsm("relabel", "--run", rel_run, "--images", rel_data / "images", "--out", out,
                      "--proposals", rel_data / "props", "--evidence", "superpixel-snap",
                      "--workers", 1, "--overwrite", "--json", "-q")
    assert code == 0, text
    summary, _ = json.JSONDecoder().raw_decode(text[text.index("{"):])
    assert summary["relabelled"] == 6 and summary["already_done"] == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["fingerprint"]["options"]["evidence"] == "superpixel-snap"


def test_relabel_parts_of_another_run_are_not_reused(tmp_path, rel_data, rel_run):
    out = tmp_path / "pseudo"
    run_relabel(rel_run, rel_data / "images", out, evidence="none", workers=1)
    other = tmp_path / "other_run"  # another mining run: same files, another run id
    other.mkdir()
    for name in ("config.json", "model_final.pt"):
        (other / name).write_bytes((rel_run / name).read_bytes())
    meta = json.loads((rel_run / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "run_id": "another"}))
    (other / "mined").mkdir()
    for p in (rel_run / "mined").rglob("*"):
        if p.is_file():
            dst = other / "mined" / p.relative_to(rel_run / "mined")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(p.read_bytes())
    code, text = jtsm("relabel", "--run", other, "--images", rel_data / "images", "--out", out,
                      "--evidence", "none", "--workers", 1, "-q")
    assert code == 1 and "input run" in text
    # a part whose job digest is not this job's is redone, never counted as done
    part = next((out / "parts").glob("*.json"))
    rec = json.loads(part.read_text())
    part.write_text(json.dumps({**rec, "job": "0" * 16}))
    again = run_relabel(rel_run, rel_data / "images", out, evidence="none", workers=1)
    assert again["relabelled"] == 1 and again["already_done"] == 5
