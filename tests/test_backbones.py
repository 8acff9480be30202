"""Backbone registry: our models, timm and torchvision names, pretrained safetensors with a replaced head."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import save_file

from modellock.nets import backbones
from modellock.nets.backbones import available_backbones, backbone_from_spec, create_backbone, register_backbone
from modellock.errors import ModelLockError


pytestmark = pytest.mark.usefixtures("one_thread")


def outputs(model, size=32):
    model.eval()
    with torch.no_grad():
        return model(torch.randn(2, 3, size, size)).shape


def same_weights(a, b, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not any(k.startswith(s) for s in skip))


def test_registry_our_models_and_a_new_one(monkeypatch):
    assert {"small-cnn", "tiny-cnn"} <= set(available_backbones())
    assert outputs(create_backbone("small-cnn", 10)) == (2, 10)
    assert outputs(create_backbone("tiny-cnn", 3, image_size=16), 16) == (2, 3)

    monkeypatch.setattr(backbones.BACKBONES, "_entries", dict(backbones.BACKBONES._entries))

    @register_backbone("linear-probe")
    def linear_probe(num_classes, image_size, pretrained=False):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * image_size * image_size, num_classes))

    model = create_backbone("linear-probe", 4, image_size=8)
    assert outputs(model, 8) == (2, 4)
    assert model.backbone_spec == {"name": "linear-probe", "num_classes": 4, "image_size": 8, "model_args": {}}
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("linear-probe")(lambda num_classes, image_size, pretrained=False: None)


@pytest.mark.parametrize("name", ["no-such-net", "timm:no_such_net", "torchvision:no_such_net", "torchvision:"])
def test_unknown_name_is_a_one_line_error(name):
    with pytest.raises(ModelLockError) as e:
        create_backbone(name, 10)
    assert repr(name) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["resnet10t", "timm:vit_tiny_patch16_224", "torchvision:resnet18"])
def test_timm_and_torchvision_names(name):
    torch.manual_seed(0)
    model = create_backbone(name, 5, image_size=32)  # the ViT gets img_size=32, the ResNets take any size
    assert outputs(model) == (2, 5)
    spec = json.loads(json.dumps(model.backbone_spec))  # JSON-able, as a config.json holds it
    assert spec["name"] == (name if ":" in name else f"timm:{name}")
    rebuilt = backbone_from_spec(spec)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_pretrained_safetensors_round_trip_and_new_head(tmp_path, caplog):
    torch.manual_seed(0)
    source = create_backbone("tiny-cnn", 10)
    save_file(source.state_dict(), tmp_path / "tiny.safetensors")

    same = create_backbone("tiny-cnn", 10, pretrained=tmp_path / "tiny.safetensors")
    assert same_weights(same, source)

    (tmp_path / "folder").mkdir()
    save_file(source.state_dict(), tmp_path / "folder" / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="modellock.nets.backbones"):
        fewer = create_backbone("tiny-cnn", 3, pretrained=str(tmp_path / "folder"))
    assert same_weights(fewer, source, skip=("head.",))
    assert fewer.head.weight.shape == (3, 16)
    assert "head.weight" in caplog.text and "head.bias" in caplog.text
    assert outputs(fewer) == (2, 3)


def test_pretrained_errors(tmp_path):
    with pytest.raises(ModelLockError, match="not found"):
        create_backbone("tiny-cnn", 3, pretrained=tmp_path / "missing.safetensors")
    (tmp_path / "weights.pth").write_bytes(b"not loaded")
    with pytest.raises(ModelLockError, match="safetensors"):
        create_backbone("tiny-cnn", 3, pretrained=tmp_path / "weights.pth")
    with pytest.raises(ModelLockError, match="no model.safetensors"):
        create_backbone("tiny-cnn", 3, pretrained=tmp_path)
    save_file(create_backbone("small-cnn", 3).state_dict(), tmp_path / "small.safetensors")
    with pytest.raises(ModelLockError, match=r"small.safetensors: .*features.0.weight"):  # shape outside the head
        create_backbone("tiny-cnn", 3, pretrained=tmp_path / "small.safetensors")
    with pytest.raises(ModelLockError, match="no published weights"):
        create_backbone("small-cnn", 3, pretrained=True)
    with pytest.raises(ModelLockError, match="not a timm model"):  # refused before any download
        create_backbone("small-cnn", 3, pretrained="hf-hub:timm/vit_base_patch16_224.mae")


def test_timm_pretrained_file_new_head_and_resized_pos_embed(tmp_path):
    torch.manual_seed(0)
    source = create_backbone("vit_tiny_patch16_224", 10, image_size=32, depth=2)
    save_file(source.state_dict(), tmp_path / "vit.safetensors")
    model = create_backbone("vit_tiny_patch16_224", 4, image_size=32, pretrained=tmp_path / "vit.safetensors", depth=2)
    assert same_weights(model, source, skip=("head.",)) and model.head.weight.shape == (4, 192)
    larger = create_backbone("vit_tiny_patch16_224", 4, image_size=48, pretrained=tmp_path / "vit.safetensors", depth=2)
    assert larger.pos_embed.shape == (1, 1 + 9, 192)  # timm's filter resampled 2x2 patches to 3x3
    assert outputs(larger, 48) == (2, 4)
    with pytest.raises(ModelLockError, match="vit.safetensors"):
        create_backbone("vit_tiny_patch16_224", 4, image_size=32, pretrained=tmp_path / "vit.safetensors", depth=3)


def test_timm_hub_folder_and_hub_id(tmp_path, monkeypatch):
    import timm.models
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    source = create_backbone("resnet10t", 10)
    save_for_hf(source, str(tmp_path / "hub"), safe_serialization=True)  # config.json + model.safetensors
    model = create_backbone("resnet10t", 10, pretrained=tmp_path / "hub")
    assert same_weights(model, source)
    with pytest.raises(ModelLockError, match="holds a 'resnet10t'"):
        create_backbone("vit_tiny_patch16_224", 10, pretrained=tmp_path / "hub")

    # The paper's call, with the hub download replaced by the local folder (tests stay offline).
    def fake_hub_config(model_id, cache_dir=None):
        assert model_id == "timm/resnet10t.fake"
        cfg = json.loads((tmp_path / "hub" / "config.json").read_text())["pretrained_cfg"]
        return {**cfg, "file": str(tmp_path / "hub" / "model.safetensors")}, "resnet10t", {}

    monkeypatch.setattr(timm.models, "load_model_config_from_hf", fake_hub_config)
    model = create_backbone("resnet10t", 38, image_size=64, pretrained="hf-hub:timm/resnet10t.fake")
    assert same_weights(model, source, skip=("fc.",)) and model.fc.weight.shape[0] == 38


def test_conv_models_take_channels_last_images_and_save_as_before(tmp_path):
    """The channels-last pre-hook changes the layout the convolutions see, not the function or the weights."""
    from modellock.tasks.segmentation.models import create_segmenter

    torch.manual_seed(0)
    for model in (create_backbone("small-cnn", 4), create_segmenter("small-segnet", 3)):
        model.eval()
        x = torch.randn(2, 3, 32, 32)
        seen = []
        handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(
            memory_format=torch.channels_last)))
        with torch.no_grad():
            fast = model(x)
        handle.remove()
        assert seen == [True]
        model._forward_pre_hooks.clear()
        with torch.no_grad():
            plain = model(x)
        assert torch.allclose(fast, plain, atol=1e-4)
        assert all(t.is_contiguous() for t in model.state_dict().values())
        save_file(model.state_dict(), str(tmp_path / "w.safetensors"))  # weights save as they are
