import json

from click.testing import CliRunner

from jtsm_cli.main import cli


def test_synth_command(tmp_path):
    r = CliRunner().invoke(cli, ["data", "synth", str(tmp_path / "d"), "--train", "3",
                                 "--val", "2", "--size", "48", "64", "--seed", "1", "--json"])
    assert r.exit_code == 0, r.output
    counts = json.loads(r.output)
    assert counts["train_images"] == 3 and counts["val_images"] == 2
    d = json.loads((tmp_path / "d/annotations/panoptic_val.json").read_text())
    assert d["images"][0]["height"] == 48 and d["images"][0]["width"] == 64
    assert len(list((tmp_path / "d/annotations/panoptic_train").glob("*.png"))) == 3


def test_usage_error_exit_2(tmp_path):
    r = CliRunner().invoke(cli, ["data", "synth", str(tmp_path), "--train", "-1"])
    assert r.exit_code == 2


def test_voc_bad_folder_is_one_line_error(tmp_path):
    r = CliRunner().invoke(cli, ["data", "voc", str(tmp_path), str(tmp_path / "o")])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(tmp_path) in lines[0]
    assert "Traceback" not in r.output


def test_every_command_has_help_with_example():
    from jtsm_cli.main import COMMANDS

    runner = CliRunner()
    commands = [[name, "--help"] for name in COMMANDS]
    for args in (["--help"], ["data", "synth", "--help"], ["data", "voc", "--help"], *commands):
        r = runner.invoke(cli, args)
        assert r.exit_code == 0 and "Example" in r.output, args


def test_version():
    import jtsm

    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"jtsm, version {jtsm.__version__}"
    assert jtsm.__version__ == "0.2.0"  # the CHANGELOG's newest release


def test_synth_with_other_classes(tmp_path):
    out = tmp_path / "d"
    r = CliRunner().invoke(cli, ["data", "synth", str(out), "--train", "2", "--val", "1",
                                 "--size", "64", "96", "--things", "cross,bar",
                                 "--stuff", "checker,rings,hatch", "--object-scale", "0.7",
                                 "-q"])
    assert r.exit_code == 0, r.output
    cats = json.loads((out / "annotations/panoptic_train.json").read_text())["categories"]
    assert [(c["name"], c["isthing"]) for c in cats] == [
        ("cross", 1), ("bar", 1), ("checker", 0), ("rings", 0), ("hatch", 0)]


def test_synth_refuses_unknown_class(tmp_path):
    r = CliRunner().invoke(cli, ["data", "synth", str(tmp_path / "d"), "--things", "disc,blob"])
    assert r.exit_code == 2
    assert "unknown thing class 'blob'" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "d").exists()


def test_synth_help_lists_every_class_of_the_pools():
    """The --things / --stuff help spells the pools out (the CLI does not import the generator
    to build it); this keeps the two lists from drifting apart."""
    from jtsm.data.synth import STUFF_TEXTURES, THING_SHAPES

    r = CliRunner().invoke(cli, ["data", "synth", "--help"], terminal_width=400)
    assert r.exit_code == 0
    import re

    words = set(re.findall(r"[a-z]+", r.output))  # whole words: "ring" is not "rings"
    for name in (*THING_SHAPES, *STUFF_TEXTURES):
        assert name in words, name


def test_tags_command_writes_labels_and_errors_are_one_line(tmp_path):
    import numpy as np
    from PIL import Image

    (tmp_path / "im").mkdir()
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "im" / "x.jpg")
    (tmp_path / "tags.csv").write_text("file,tags\nx.jpg,person;grass\n")
    out = tmp_path / "labels.json"
    r = CliRunner().invoke(cli, ["data", "tags", str(tmp_path / "tags.csv"), "--images",
                                 str(tmp_path / "im"), "--out", str(out), "--stuff", "grass",
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stuff"] == ["grass"]  # warnings go to stderr
    d = json.loads(out.read_text())
    assert d["images"][0] | {"labels": None} == {"id": 1, "file_name": "x.jpg", "height": 12,
                                                 "width": 16, "labels": None}
    assert r.exit_code == 0 and "Example" in CliRunner().invoke(
        cli, ["data", "tags", "--help"]).output
    (tmp_path / "tags.csv").write_text("x.jpg,person\ny.jpg,grass\n")
    r = CliRunner().invoke(cli, ["data", "tags", str(tmp_path / "tags.csv"), "--images",
                                 str(tmp_path / "im"), "--out", str(out)])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert lines[0].startswith("Error: ") and "tags.csv: line 2: no image 'y.jpg'" in lines[0]


def _tag_photos(tmp_path):
    """Three generated photos, a tags file that lists two of them (a kite on one only)."""
    import cv2
    import numpy as np

    (tmp_path / "im").mkdir()
    for i, name in enumerate(("x.jpg", "y.jpg", "z.jpg")):
        assert cv2.imwrite(str(tmp_path / "im" / name), np.full((10, 14, 3), 40 * i, np.uint8))
    (tmp_path / "tags.csv").write_text("file,tags\nx.jpg,Dog;kite\ny.jpg,dog;sky\n")
    return tmp_path / "tags.csv", tmp_path / "im"


def test_tags_reports_unlisted_photos_rare_classes_and_merged_spellings(tmp_path):
    from jtsm.data.tags import read_tags

    tags, im = _tag_photos(tmp_path)
    out = tmp_path / "labels.json"
    r = CliRunner().invoke(cli, ["data", "tags", str(tags), "--images", str(im), "--out",
                                 str(out)])
    assert r.exit_code == 0, r.output
    err = r.stderr.strip().splitlines()
    assert err[0] == "Note: tag names that differ only in case are one class: 'Dog' (also 'dog')"
    assert err[1] == f"Warning: 1 image under {im} is not in {tags}, so no stage will use it: " \
                     "z.jpg"
    assert err[2].startswith("Warning: 2 classes tagged on one image only will not be learned")
    assert "'kite' (1 image), 'sky' (1 image)" in err[2] and len(err) == 3
    assert r.stdout.startswith(f"Wrote {out}: 2 images (2 tagged), 3 classes")
    assert json.loads(out.read_text()) == read_tags(tags, im)[0]  # warnings change nothing
    r = CliRunner().invoke(cli, ["data", "tags", str(tags), "--images", str(im), "--out",
                                 str(out), "--min-images", "3", "--json"])
    counts = json.loads(r.stdout)
    assert counts["unlisted_images"] == ["z.jpg"]
    assert counts["rare_classes"] == {"kite": 1, "sky": 1, "Dog": 2}
    assert counts["merged_spellings"] == {"Dog": ["dog"]}
    assert "fewer than 3 images (--min-images) may not be learned: 'Dog' (2 images)" in r.stderr


def test_tags_strict_turns_warnings_into_an_error_and_writes_nothing(tmp_path):
    tags, im = _tag_photos(tmp_path)
    out = tmp_path / "labels.json"
    r = CliRunner().invoke(cli, ["data", "tags", str(tags), "--images", str(im), "--out",
                                 str(out), "--strict"])
    assert r.exit_code == 1 and not out.exists()
    errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("Note: ")]
    assert len(errors) == 1 and errors[0].startswith("Error: 1 image under ")
    assert "'kite' (1 image)" in errors[0] and errors[0].endswith(f"(--strict: {out} not written)")
    assert "Traceback" not in r.output
    (tmp_path / "tags.csv").write_text("x.jpg,dog;sky\ny.jpg,dog;sky\nz.jpg,sky\n")
    r = CliRunner().invoke(cli, ["data", "tags", str(tags), "--images", str(im), "--out",
                                 str(out), "--strict", "--min-images", "2"])
    assert r.exit_code == 0 and r.stderr == "" and out.is_file()
