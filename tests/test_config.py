import pytest

from jtsm.config import Config, config_from_dict, config_to_dict, load_config
from jtsm.errors import ConfigError


def test_defaults_file_then_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('seed = 4\n[solver]\nlr = 0.02\nsteps = [10, 20]\n'
                 '[mining]\npooling = "roi-align"\n')
    cfg = load_config(f, ["solver.max_iter=7", "solver.lr=0.5", "input.train_scales=[96,112]",
                          "input.hflip=false"])
    assert cfg.seed == 4 and cfg.solver.lr == 0.5 and cfg.solver.steps == [10, 20]
    assert cfg.solver.max_iter == 7 and cfg.mining.pooling == "roi-align"
    assert cfg.input.train_scales == [96, 112] and cfg.input.hflip is False
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_json_config(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"solver": {"ims_per_batch": 2}}')
    assert load_config(f).solver.ims_per_batch == 2


@pytest.mark.parametrize("override, msg", [
    ("solver.lr=abc", "solver.lr='abc': expected a number"),
    ("solver.max_iter=1.5", "solver.max_iter=1.5: expected an integer"),
    ("solver.lr=-1", "solver.lr=-1.0 is out of range"),
    ("mining.pooling=avg", "mining.pooling='avg' is out of range"),
    ("solver.nope=1", "unknown config key 'solver.nope'"),
    ("input.hflip=maybe", "expected true or false"),
    ("warmup.grayscale=1.5", "warmup.grayscale=1.5 is out of range"),
    ("warmup.small_iters=10", "warmup.small_iters=10 is out of range"),  # > warmup.iters (0)
    ("warmup.small_scale=8", "warmup.small_scale=8 is out of range"),
    ("seed", "must look like key=value"),
])
def test_bad_values_named(override, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace("[", r"\[")):
        load_config(overrides=[override])


def test_whitening_would_replace_a_pretrained_stem_so_it_is_refused():
    with pytest.raises(ConfigError, match="warmup.whiten_images=200 is out of range.*pretrained"):
        load_config(overrides=["backbone.weights=r18.pth", "warmup.whiten_images=200"])
    assert load_config(overrides=["backbone.weights=r18.pth"]).warmup.whiten_images == 0


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "b.toml").write_text("[solver\n")
    with pytest.raises(ConfigError, match="b.toml: cannot parse"):
        load_config(tmp_path / "b.toml")
    (tmp_path / "c.ini").write_text("")
    with pytest.raises(ConfigError, match="unknown config format"):
        load_config(tmp_path / "c.ini")


def test_default_config_is_valid():
    assert Config().validate() == Config()


def test_synth_example_config_is_the_cpu_preset():
    from pathlib import Path

    from jtsm.presets import PRESETS

    root = Path(__file__).resolve().parents[1]
    assert load_config(root / "examples/configs/synth.toml") == load_config(
        overrides=PRESETS["cpu"])
    mined = load_config(overrides=PRESETS["cpu"])
    assert load_config(root / "examples/configs/synth_refine.toml", base=mined) == load_config(
        overrides={**PRESETS["cpu"], **PRESETS["cpu-refine"]})


def test_example_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for f in sorted((root / "examples/configs").glob("*.toml")):
        load_config(f)


def test_an_unknown_precision_is_refused_naming_the_key():
    assert load_config(overrides=["backbone.precision=bf16"]).backbone.precision == "bf16"
    with pytest.raises(ConfigError, match="backbone.precision='fp16'"):
        load_config(overrides=["backbone.precision=fp16"])
