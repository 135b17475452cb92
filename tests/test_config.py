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
    ("tag_warmup.batch=1", "tag_warmup.batch=1 is out of range"),
    ("warmup.mosaic=0.5", "unknown config key 'warmup.mosaic'"),  # tried, removed
    ("seed", "must look like key=value"),
])
def test_bad_values_named(override, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace("[", r"\[")):
        load_config(overrides=[override])


def test_whitening_would_replace_a_pretrained_stem_so_it_is_refused():
    with pytest.raises(ConfigError,
                       match="tag_warmup.whiten_images=200 is out of range.*pretrained"):
        load_config(overrides=["backbone.name=resnet18", "backbone.weights=r18.pth",
                               "tag_warmup.whiten_images=200"])
    assert load_config(overrides=["backbone.name=resnet18", "backbone.weights=r18.pth"]
                       ).tag_warmup.whiten_images == 0


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


def test_every_preset_loads_by_name_and_by_path():
    from jtsm.config import PRESET_DIR, preset_names

    names = preset_names()
    assert {"synth", "synth_refine", "voc", "coco", "photos"} <= set(names)
    for name in names:
        assert load_config(name) == load_config(PRESET_DIR / f"{name}.toml")


def test_a_preset_name_works_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("synth").tag_warmup.iters == 2000


def test_base_presets_apply_first_and_the_file_over_them(tmp_path):
    quick = load_config("synth_quick")
    synth = load_config("synth")
    assert quick.solver.max_iter == 60 and quick.backbone == synth.backbone  # from its base
    f = tmp_path / "mine.toml"
    f.write_text('_base_ = "synth"\n[solver]\nmax_iter = 7\n')
    cfg = load_config(f)
    assert cfg.solver.max_iter == 7 and cfg.tag_warmup.iters == 2000
    (tmp_path / "child.toml").write_text('_base_ = "mine.toml"\n[warmup]\niters = 3\n')
    child = load_config(tmp_path / "child.toml")
    assert (child.solver.max_iter, child.tag_warmup.iters) == (7, 3)


def test_bad_presets_and_bases_are_named(tmp_path):
    with pytest.raises(ConfigError, match="--config nope: neither a file nor a preset"):
        load_config("nope")
    (tmp_path / "loop.toml").write_text('_base_ = "loop.toml"\n')
    with pytest.raises(ConfigError, match="refers back to itself"):
        load_config(tmp_path / "loop.toml")
    (tmp_path / "b.toml").write_text("_base_ = 3\n")
    with pytest.raises(ConfigError, match="_base_ must name presets"):
        load_config(tmp_path / "b.toml")


def test_the_refine_preset_goes_over_the_mining_runs_config():
    mined = load_config("synth")
    synth = load_config("synth")
    kept = config_to_dict(synth)
    cfg = load_config("synth_refine", base=synth)
    assert config_to_dict(synth) == kept and cfg is not synth  # base is left as it was
    assert cfg.backbone == mined.backbone and cfg.tag_warmup == mined.tag_warmup
    assert cfg.solver.max_iter == 400 and cfg.refine.snap == "superpixels"


def test_an_unknown_precision_is_refused_naming_the_key():
    assert load_config(overrides=["backbone.precision=bf16"]).backbone.precision == "bf16"
    with pytest.raises(ConfigError, match="backbone.precision='fp16'"):
        load_config(overrides=["backbone.precision=fp16"])


def test_each_choice_is_declared_once_and_implemented():
    """A choice key's values are its ``Literal`` type in jtsm.config; the tables the code
    dispatches on hold exactly those, and every value is refused or accepted where coerced."""
    import torch

    from jtsm.config import SolverConfig, choices
    from jtsm.engine.trainer import _optimizer
    from jtsm.modeling.backbone import BACKBONES, norm_layer
    from jtsm.modeling.pooling import POOLERS
    from jtsm.modeling.precision import PRECISIONS

    assert set(BACKBONES) == set(choices("backbone.name"))
    assert POOLERS == choices("mining.pooling")
    assert PRECISIONS == choices("backbone.precision")
    for norm in choices("backbone.norm"):
        if norm != "auto":  # resolved to one of the others by the backbone
            assert isinstance(norm_layer(norm)(8), torch.nn.Module)
    for opt in choices("solver.optimizer"):
        assert _optimizer(torch.nn.Linear(2, 2), SolverConfig(optimizer=opt), None)
    for key in ("backbone.stride", "tag_warmup.stride", "refine.snap", "refine.mask_weight",
                "refine.things_from", "refine.stuff_from", "mining.oicr_overlap",
                "mining.compensation", "tag_warmup.optimizer"):
        for value in choices(key):
            assert load_config(overrides={key: value}).get(key) == value
        with pytest.raises(ConfigError, match=f"{key}='nope' is out of range"
                           if isinstance(choices(key)[0], str) else f"{key}='nope'"):
            load_config(overrides={key: "nope"})


def test_renamed_sections_keep_their_old_names_with_a_note(tmp_path, capsys):
    """``mined.*`` is ``segments.*`` and ``warmup.*`` is ``tag_warmup.*``: the old names set
    the new keys (a note, once per key), in ``--set`` and in files alike; a run's config.json
    written with the old names reads back as the same config, without a note."""
    import jtsm.config as config_module
    from jtsm.config import canonical_key, config_from_dict

    config_module._NOTED.clear()
    cfg = load_config(overrides=["mined.nms=0.4", "warmup.iters=7", "mined.nms=0.3"])
    assert (cfg.segments.nms, cfg.tag_warmup.iters) == (0.3, 7)
    err = capsys.readouterr().err.splitlines()
    assert err == ["Note: config key mined.nms is now segments.nms (the old name still works)",
                   "Note: config key warmup.iters is now tag_warmup.iters (the old name still "
                   "works)"]
    (tmp_path / "old.toml").write_text("[mined]\nmax_instances = 9\n")
    assert load_config(tmp_path / "old.toml").segments.max_instances == 9
    old = config_to_dict(load_config(overrides=["segments.nms=0.2"]))
    old["mined"], old["warmup"] = old.pop("segments"), old.pop("tag_warmup")
    capsys.readouterr()
    assert config_to_dict(config_from_dict(old)) == config_to_dict(
        load_config(overrides=["segments.nms=0.2"]))
    assert capsys.readouterr().err == ""
    assert canonical_key("mined.nms") == "segments.nms" and canonical_key("mining.x") == "mining.x"
    # refine is stage 2's alone: the mining branch's OICR heads have keys of their own
    assert load_config(overrides=["mining.refine_heads=2"]).mining.oicr_heads == 2
    assert canonical_key("mining.refine_iou") == "mining.oicr_overlap"
