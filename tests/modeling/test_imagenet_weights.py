"""``backbone.weights = imagenet``: torchvision's weights through the torch hub cache, offline.

Every test points TORCH_HOME at a temporary folder and blocks the network (a download that
is attempted fails at once), so nothing here reaches the internet: the cache is filled with a
local file, exactly where torchvision's own loader would have put it.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch
import torchvision

from jtsm.config import load_config
from jtsm.errors import ConfigError, DataError
from jtsm.modeling.imagenet_weights import hub_file, resolve_weights, weights_entry
from jtsm.modeling.model import backbone_from_config


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache under TORCH_HOME, and no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (blocked by the test)")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    return tmp_path / "torch" / "hub"


def _fill(hub_dir: Path, name: str = "ResNet18_Weights.IMAGENET1K_V1", seed: int = 0) -> dict:
    """Write a ResNet state dict (random, seeded) where torch hub keeps ``name``'s file."""
    entry = torchvision.models.get_weight(name)
    depth = int(type(entry).__name__[len("ResNet"):].split("_")[0])
    torch.manual_seed(seed)
    state = getattr(torchvision.models, f"resnet{depth}")().state_dict()
    file = hub_file(entry)
    assert file.parent == hub_dir / "checkpoints"
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, file)
    return state


def test_imagenet_loads_from_the_cache_without_network(hub):
    state = _fill(hub)
    file = resolve_weights("imagenet", "resnet18-ws")
    assert file == hub / "checkpoints" / "resnet18-f37072fd.pth"
    cfg = load_config("photos", [])
    assert cfg.backbone.weights == "imagenet"  # the preset uses it by default
    backbone = backbone_from_config(cfg)
    got = backbone.state_dict()
    for key in ("conv1.weight", "layer4.1.conv2.weight", "layer2.0.bn1.weight"):
        assert torch.equal(got[key], state[key]), key
    # frozen BN with the file's statistics, stages up to res2 frozen (pretrained defaults)
    assert torch.equal(got["layer1.0.bn1.running_var"], state["layer1.0.bn1.running_var"])
    assert not any(p.requires_grad for p in backbone.layer1.parameters())
    assert all(p.requires_grad for p in backbone.layer3.parameters())


def test_named_entry_for_resnet50(hub):
    state = _fill(hub, "ResNet50_Weights.IMAGENET1K_V2", seed=1)
    file = resolve_weights("torchvision:ResNet50_Weights.IMAGENET1K_V2", "resnet50")
    assert file.name == Path(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url).name
    got = torch.load(file, weights_only=True)
    assert torch.equal(got["conv1.weight"], state["conv1.weight"])


def test_missing_cache_is_one_line_naming_the_file_and_url(hub):
    with pytest.raises(DataError) as e:
        resolve_weights("imagenet", "resnet18-ws")
    msg = str(e.value)
    assert "\n" not in msg
    assert str(hub / "checkpoints" / "resnet18-f37072fd.pth") in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert not (hub / "checkpoints" / "resnet18-f37072fd.pth").exists()


def test_missing_cache_through_the_cli_is_one_line_before_any_work(hub, tmp_path):
    from click.testing import CliRunner

    from jtsm_cli.main import cli

    # a dataset the command never gets to read: the backbone is built first
    r = CliRunner().invoke(cli, ["config", "show", "photos"])
    assert r.exit_code == 0 and 'weights = "imagenet"' in r.output
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["mine", "--dataset", __file__, "--images", str(tmp_path),
                                 "--proposals", str(tmp_path), "--out", str(out),
                                 "--config", "photos", "--device", "cpu"])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("Error: ") and "resnet18-f37072fd.pth" in lines[-1]
    assert "Traceback" not in r.output
    assert not out.exists()


def test_download_fills_the_cache_and_checks_the_hash(hub, tmp_path, monkeypatch):
    """The download path, offline: the URL is a local file (urllib reads file:// URLs)."""
    import jtsm.modeling.imagenet_weights as iw

    torch.manual_seed(2)
    src = tmp_path / "served.pth"
    torch.save(torchvision.models.resnet18().state_dict(), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    entry = torchvision.models.ResNet18_Weights.IMAGENET1K_V1

    class Served:  # stands for the enum entry: the same file name, a local URL
        url = src.as_uri()

    good = hub / "checkpoints" / f"resnet18-{digest[:8]}.pth"
    monkeypatch.setattr(iw, "weights_entry", lambda spec, backbone: Served)
    monkeypatch.setattr(iw, "hub_file", lambda e: good)
    assert resolve_weights("imagenet", "resnet18") == good
    assert good.read_bytes() == src.read_bytes()
    # a file whose bytes do not match the hash in its name is refused and not kept
    bad = hub / "checkpoints" / "resnet18-00000000.pth"
    monkeypatch.setattr(iw, "hub_file", lambda e: bad)
    with pytest.raises(DataError, match="resnet18-00000000.pth"):
        resolve_weights("imagenet", "resnet18")
    assert not bad.exists()
    assert entry.url.endswith("resnet18-f37072fd.pth")


def test_names_checked_against_the_backbone():
    assert type(weights_entry("imagenet", "resnet50-ws")).__name__ == "ResNet50_Weights"
    with pytest.raises(ConfigError, match="ResNet50_Weights"):
        weights_entry("torchvision:ResNet50_Weights.IMAGENET1K_V2", "resnet18")
    with pytest.raises(ConfigError, match="no weights"):
        weights_entry("torchvision:ResNet18_Weights.NOPE", "resnet18")
    with pytest.raises(ConfigError, match="tiny"):
        load_config(None, ["backbone.weights=imagenet"])  # the default backbone is tiny


def test_file_path_still_works_and_missing_file_is_named(tmp_path):
    torch.manual_seed(3)
    f = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), f)
    assert resolve_weights(str(f), "resnet18") == f
    with pytest.raises(DataError, match="nope.pth"):
        resolve_weights(str(tmp_path / "nope.pth"), "resnet18")


def test_a_trained_run_loads_without_the_imagenet_file(hub, tmp_path):
    """A run trained from ImageNet weights is rebuilt for its own weights without reading the
    ImageNet file: predict works on a machine whose cache is empty."""
    from jtsm.modeling.build import build_model
    from jtsm.structures import CategoryMap

    _fill(hub)
    cfg = load_config("photos", ["mining.fc_dim=16"])
    cats = CategoryMap.from_coco([{"id": 1, "name": "cat", "isthing": 1},
                                  {"id": 2, "name": "sky", "isthing": 0}])
    trained = build_model(cfg, cats, "mine").state_dict()
    (hub / "checkpoints" / "resnet18-f37072fd.pth").unlink()
    rebuilt = build_model(cfg, cats, "mine", pretrained=False)
    rebuilt.load_state_dict(trained)  # same modules (frozen BN), no file needed
    with pytest.raises(DataError):
        build_model(cfg, cats, "mine")
