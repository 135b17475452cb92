import json

from click.testing import CliRunner

from jtsm_cli.main import cli


def test_quick_demo_runs_every_stage_and_reports_pq(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(cli, ["demo", "--out", str(out), "--quick", "--json", "--quiet",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert set(res["pq"]) >= {"All", "Things", "Stuff", "per_class"}
    assert res["pq"]["All"]["n"] == 9
    assert res["pq_mined"]["All"]["n"] == 9 and res["pq_pseudo_train"]["All"]["n"] == 9
    assert set(res["seconds"]) == {"data", "proposals", "mine", "relabel", "refine", "predict"}
    assert 0 <= res["corloc"]["corloc"] <= 1
    for p in ("data/annotations/panoptic_val.json", "mine/model_final.pt",
              "mine/mined/panoptic.json", "relabel/panoptic.json", "refine/model_final.pt",
              "val_mined/panoptic.json", "val_refined/panoptic.json",
              "val_refined/instances.json"):
        assert (out / p).is_file(), p
    # a rerun skips finished stages and gives the same numbers
    again = CliRunner().invoke(cli, ["demo", "--out", str(out), "--quick", "--json", "--quiet"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["pq"] == res["pq"]
