"""Segmentation registry: our U-Nets, torchvision and SegFormer models, specs, pretrained weights, a quick overfit."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import save_file

from modellock.tasks.segmentation import models as seg_models
from modellock.errors import ModelLockError
from modellock.tasks.segmentation.metrics import ConfusionMatrix, update_from_logits
from modellock.tasks.segmentation.models import available_segmenters, create_segmenter, register_segmenter, segmenter_from_spec

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_SEGFORMER = dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                      decoder_hidden_size=16)


def outputs(model, height=32, width=None):
    model.eval()
    with torch.no_grad():
        return model(torch.randn(2, 3, height, width or height))


def same_weights(a, b, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not any(k.startswith(s) for s in skip))


def assert_spec_round_trip(model, size=32):
    """JSON spec -> the same architecture offline; the state dict loads strictly and gives the same logits."""
    spec = json.loads(json.dumps(model.backbone_spec))
    assert spec["task"] == "segmentation"
    rebuilt = segmenter_from_spec(spec)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), rebuilt.eval()(x), atol=1e-5)
    return rebuilt


def test_our_models_shapes_spec_and_registry(monkeypatch):
    assert {"small-segnet", "tiny-segnet"} <= set(available_segmenters())
    small = create_segmenter("small-segnet", 5)
    assert 100_000 < sum(p.numel() for p in small.parameters()) < 300_000
    assert outputs(small).shape == (2, 5, 32, 32)
    assert outputs(small, 30, 22).shape == (2, 5, 30, 22)  # odd sizes come back at the input resolution
    tiny = create_segmenter("tiny-segnet", 3, image_size=16)
    assert sum(p.numel() for p in tiny.parameters()) < 10_000
    assert outputs(tiny, 16).shape == (2, 3, 16, 16)
    assert tiny.backbone_spec == {"name": "tiny-segnet", "num_classes": 3, "image_size": 16, "model_args": {},
                                  "task": "segmentation"}
    assert_spec_round_trip(create_segmenter("tiny-segnet", 3, widths=[4, 8, 12]))

    monkeypatch.setattr(seg_models.SEGMENTERS, "_entries", dict(seg_models.SEGMENTERS._entries))

    @register_segmenter("pixel-linear")
    def pixel_linear(num_classes, image_size, pretrained=False):
        return torch.nn.Conv2d(3, num_classes, 1)

    assert outputs(create_segmenter("pixel-linear", 4), 8).shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="already registered"):
        register_segmenter("pixel-linear")(lambda num_classes, image_size, pretrained=False: None)


@pytest.mark.parametrize("name", ["no-such-net", "torchvision:resnet18", "torchvision:", "segformer:",
                                  "segformer:mit-b9", "timm:resnet18"])
def test_unknown_name_is_a_one_line_error(name):
    with pytest.raises(ModelLockError) as e:
        create_segmenter(name, 3)
    message = str(e.value)
    assert repr(name) in message and "\n" not in message
    assert "small-segnet" in message and "torchvision:NAME" in message and "segformer:mit-b0" in message


@pytest.mark.parametrize("name", ["torchvision:lraspp_mobilenet_v3_large", "torchvision:fcn_resnet50"])
def test_torchvision_logits_at_input_size(name):
    torch.manual_seed(0)
    model = create_segmenter(name, 4, image_size=64)
    assert outputs(model, 64, 48).shape == (2, 4, 64, 48)  # a tensor, not torchvision's {"out", "aux"} dict
    assert not any(k.startswith("aux_classifier") for k in model.state_dict())
    assert model.backbone_spec["name"] == name


def test_torchvision_spec_and_pretrained_with_new_head(tmp_path, caplog):
    torch.manual_seed(0)
    source = create_segmenter("torchvision:lraspp_mobilenet_v3_large", 4)
    assert_spec_round_trip(source, 64)
    save_file(source.state_dict(), tmp_path / "lraspp.safetensors")
    same = create_segmenter("torchvision:lraspp_mobilenet_v3_large", 4, pretrained=tmp_path / "lraspp.safetensors")
    assert same_weights(same, source)
    with caplog.at_level(logging.WARNING, logger="modellock.nets.backbones"):
        fewer = create_segmenter("torchvision:lraspp_mobilenet_v3_large", 3, pretrained=tmp_path / "lraspp.safetensors")
    heads = ("classifier.low_classifier.", "classifier.high_classifier.")
    assert same_weights(fewer, source, skip=heads)
    assert fewer.classifier.low_classifier.weight.shape[0] == fewer.classifier.high_classifier.weight.shape[0] == 3
    assert "classifier.high_classifier.weight" in caplog.text
    assert outputs(fewer, 64).shape == (2, 3, 64, 64)


def test_torchvision_file_with_aux_classifier(tmp_path):
    import torchvision

    torch.manual_seed(0)
    published = torchvision.models.get_model("deeplabv3_mobilenet_v3_large", weights=None, weights_backbone=None,
                                             num_classes=21, aux_loss=True)
    save_file(published.state_dict(), tmp_path / "deeplab.safetensors")
    model = create_segmenter("torchvision:deeplabv3_mobilenet_v3_large", 2, pretrained=tmp_path / "deeplab.safetensors")
    assert model.aux_classifier is None and not any(k.startswith("aux_") for k in model.state_dict())
    own = published.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in model.state_dict().items() if not k.startswith("classifier.4."))
    assert model.classifier[4].weight.shape[0] == 2
    assert outputs(model, 48).shape == (2, 2, 48, 48)


def test_our_pretrained_safetensors_and_errors(tmp_path, caplog):
    torch.manual_seed(0)
    source = create_segmenter("tiny-segnet", 5)
    (tmp_path / "folder").mkdir()
    save_file(source.state_dict(), tmp_path / "folder" / "model.safetensors")
    assert same_weights(create_segmenter("tiny-segnet", 5, pretrained=tmp_path / "folder" / "model.safetensors"), source)
    with caplog.at_level(logging.WARNING, logger="modellock.nets.backbones"):
        fewer = create_segmenter("tiny-segnet", 2, pretrained=str(tmp_path / "folder"))
    assert same_weights(fewer, source, skip=("head.",)) and fewer.head.weight.shape[0] == 2
    assert "head.weight" in caplog.text

    (tmp_path / "weights.pth").write_bytes(b"not loaded")
    with pytest.raises(ModelLockError, match=r"weights.pth: .*safetensors"):
        create_segmenter("tiny-segnet", 2, pretrained=tmp_path / "weights.pth")
    with pytest.raises(ModelLockError, match=r"weights.pth: .*safetensors"):
        create_segmenter("torchvision:lraspp_mobilenet_v3_large", 2, pretrained=tmp_path / "weights.pth")
    with pytest.raises(ModelLockError, match="not found"):
        create_segmenter("tiny-segnet", 2, pretrained=tmp_path / "missing.safetensors")
    with pytest.raises(ModelLockError, match="no published weights"):
        create_segmenter("small-segnet", 2, pretrained=True)
    with pytest.raises(ModelLockError, match="pickled"):
        create_segmenter("torchvision:lraspp_mobilenet_v3_large", 2, pretrained=True)
    with pytest.raises(ModelLockError, match="hub id"):
        create_segmenter("small-segnet", 2, pretrained="nvidia/mit-b0")
    save_file(create_segmenter("small-segnet", 5).state_dict(), tmp_path / "small.safetensors")
    with pytest.raises(ModelLockError, match=r"small.safetensors: "):  # another architecture
        create_segmenter("tiny-segnet", 5, pretrained=tmp_path / "small.safetensors")
    with pytest.raises(ModelLockError, match="num_classes"):
        create_segmenter("tiny-segnet", 0)


def test_segformer_from_scratch_folder_and_spec(tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    model = create_segmenter("segformer:mit-b0", 3, **TINY_SEGFORMER)
    assert outputs(model, 40, 32).shape == (2, 3, 40, 32)  # 1/4-resolution logits upsampled (sides >= 32)
    config = model.backbone_spec["model_args"]["config"]
    assert config["hidden_sizes"] == [8, 16, 24, 32] and config["sr_ratios"] == [8, 4, 2, 1]
    assert_spec_round_trip(model)
    hub_named = segmenter_from_spec({**model.backbone_spec, "name": "segformer:nvidia/mit-b0"})  # no hub access
    assert same_weights(hub_named, model, skip=("model.",))

    # A save_pretrained folder with 5 labels, loaded for 3 classes: the encoder kept, a fresh classifier.
    source = SegformerForSemanticSegmentation(SegformerConfig(**TINY_SEGFORMER, num_labels=5))
    source.save_pretrained(tmp_path / "hf")
    loaded = create_segmenter("segformer:mit-b0", 3, pretrained=tmp_path / "hf", **TINY_SEGFORMER)
    own = source.state_dict()
    assert all(torch.equal(v, own[k.removeprefix("model.")]) for k, v in loaded.state_dict().items()
               if not k.startswith("model.decode_head.classifier."))
    assert loaded.model.decode_head.classifier.weight.shape[0] == 3
    assert outputs(loaded).shape == (2, 3, 32, 32)
    rebuilt = assert_spec_round_trip(loaded)
    assert rebuilt.backbone_spec == loaded.backbone_spec

    by_name = create_segmenter(f"segformer:{tmp_path / 'hf'}", 3, pretrained=True)
    assert same_weights(by_name, loaded, skip=("model.decode_head.classifier.",))
    config_only = create_segmenter(f"segformer:{tmp_path / 'hf'}", 3)  # its config, fresh weights
    assert config_only.backbone_spec["model_args"] == loaded.backbone_spec["model_args"]


def test_segformer_sizes_and_errors(tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    b2 = seg_models._segformer_base("mit-b2", seg_models._segformer_fields())
    assert b2["hidden_sizes"] == [64, 128, 320, 512] and b2["depths"] == [3, 4, 6, 3]
    assert b2["decoder_hidden_size"] == 768
    for name in ["segformer:nvidia/mit-b0", "segformer:nvidia/segformer-b0-finetuned-ade-512-512"]:
        with pytest.raises(ModelLockError, match="not a local path, so tried as a Hugging Face hub id") as e:
            create_segmenter(name, 3)
        assert "\n" not in str(e.value)
    with pytest.raises(ModelLockError, match="cannot read pretrained nvidia/mit-b0 "):
        create_segmenter("segformer:mit-b0", 3, pretrained=True)
    with pytest.raises(ModelLockError, match="unknown SegformerConfig fields"):
        create_segmenter("segformer:mit-b0", 3, hidden_size=8)
    SegformerForSemanticSegmentation(SegformerConfig(**TINY_SEGFORMER)).save_pretrained(tmp_path / "tiny")
    with pytest.raises(ModelLockError, match=r"holds a SegFormer with .*hidden_sizes.*segformer:mit-b0"):
        create_segmenter("segformer:mit-b0", 3, pretrained=tmp_path / "tiny")  # tiny weights, not mit-b0's


def test_small_segnet_overfits_bright_squares():
    torch.manual_seed(0)
    images = torch.full((8, 3, 32, 32), -1.0) + 0.1 * torch.randn(8, 3, 32, 32)
    masks = torch.zeros(8, 32, 32, dtype=torch.long)
    for i in range(8):
        top, left, side = 2 + 3 * i, 20 - 2 * i, 8 + i
        images[i, :, top:top + side, left:left + side] += 2.0
        masks[i, top:top + side, left:left + side] = 1
    model = create_segmenter("small-segnet", 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    cm = ConfusionMatrix(2)
    with torch.no_grad():
        update_from_logits(cm, model(images), masks)
    assert cm.pixel_accuracy() > 0.9, cm.matrix  # the background alone is 88% of the pixels, so also:
    assert cm.iou()[1] > 0.7, cm.matrix
