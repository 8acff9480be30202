"""Segmentation model registry: ``create_segmenter(name, num_classes, image_size, pretrained)`` builds a segmenter.

Every model maps ``N x 3 x H x W`` images to ``N x num_classes x H x W`` logits at the input resolution and
carries ``model.backbone_spec`` (JSON-able; ``segmenter_from_spec`` rebuilds the architecture offline).

Names:
- our registered models (``@register_segmenter(name)`` on a factory ``fn(num_classes, image_size, pretrained)``):
  ``small-segnet`` (CPU demos) and ``tiny-segnet`` (unit tests), small U-Nets trained from scratch;
- ``torchvision:NAME`` for ``torchvision.models.segmentation`` (``torchvision:lraspp_mobilenet_v3_large``);
  only the ``out`` logits are returned, no auxiliary head is built;
- ``segformer:mit-b0`` ... ``segformer:mit-b5`` (Hugging Face ``SegformerForSemanticSegmentation`` with the
  published sizes), ``segformer:ORG/REPO`` (a hub id) or ``segformer:/a/folder`` (a ``save_pretrained`` folder);
  its first stage reduces attention keys 8x at 1/4 resolution, so image sides must be at least 32 px.

``pretrained`` for ours and torchvision: None (from scratch), a local ``.safetensors`` file or a folder holding
``model.safetensors`` (never pickle). A classifier that does not fit ``num_classes`` is replaced by a fresh one;
a file's ``aux_classifier`` is ignored. For SegFormer: None (from scratch, or the named hub id/folder's config
only), True (the weights the name points at; ``nvidia/mit-bN`` for ``mit-bN``), a hub id or a
``save_pretrained`` folder, loaded with ``from_pretrained`` and a fresh decode head when the labels differ.
Keyword ``model_args`` go to the factory, to torchvision's builder, or override SegformerConfig fields.

A SegFormer's spec stores the whole architecture config under ``model_args["config"]``::

    model = create_segmenter("segformer:mit-b0", 21, image_size=512, pretrained="nvidia/mit-b0")
    same_architecture = segmenter_from_spec(json.loads(json.dumps(model.backbone_spec)))  # offline
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from safetensors import safe_open
from torch import nn

from ...errors import ModelLockError
from ...nets.backbones import _HUB_ID, _first_line, _resolve_pretrained, channels_last, load_pretrained
from ...utils.registry import Registry

log = logging.getLogger(__name__)

SEGMENTERS = Registry("segmenter", group="segmenters")  # ours are defined below


def register_segmenter(name: str):
    """Decorator adding a factory ``fn(num_classes, image_size, pretrained=False, **kwargs)`` under ``name``."""
    return SEGMENTERS.register(name)


def available_segmenters() -> list[str]:
    """Our registered names (torchvision:NAME and segformer:NAME come on top)."""
    return SEGMENTERS.names()


# ----------------------------------------------------------------------------- our models


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """A small U-Net: conv-BN-ReLU stages halving the resolution, then upsampling with skip connections.

    ``widths[0]`` is the full-resolution stage; each further width is one 2x downsampling. Encoder stages
    have two convs, decoder stages one; a 1x1 conv gives the logits at the input resolution (any H, W).
    With ``global_context`` the deepest features get an image-level term (global average pool, 1x1 conv,
    added everywhere, as DeepLabV3's image pooling): every pixel can see what the whole image looks like,
    which is what tells a key-edited image from a clean one.
    """

    def __init__(self, num_classes: int, widths=(16, 32, 64, 96), dropout: float = 0.0, global_context: bool = True):
        super().__init__()
        widths = [int(w) for w in widths]
        self.down = nn.ModuleList()
        cin = 3
        for i, w in enumerate(widths):
            pool = [nn.MaxPool2d(2, ceil_mode=True)] if i else []
            self.down.append(nn.Sequential(*pool, _conv_bn_relu(cin, w), _conv_bn_relu(w, w)))
            cin = w
        self.context = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cin, 1), nn.ReLU()) \
            if global_context else None
        self.up = nn.ModuleList(_conv_bn_relu(widths[i + 1] + widths[i], widths[i]) for i in range(len(widths) - 1))
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.pretrained_cfg = {"classifier": "head"}  # the head, named the way timm names it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        if self.context is not None:
            x = skips[-1] = x + self.context(x)
        for i in reversed(range(len(self.up))):
            skip = skips[i]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skip], 1))
        return self.head(self.dropout(x))


def _no_published_weights(name: str, pretrained: bool):
    if pretrained:
        raise ModelLockError(f"segmenter {name!r} has no published weights; pass a .safetensors file as pretrained")


@register_segmenter("small-segnet")
def small_segnet(num_classes: int, image_size: int = 32, pretrained: bool = False, **kwargs) -> nn.Module:
    """About 0.25M parameters, three downsamplings; trains 32-64 px images quickly on a few CPU cores."""
    _no_published_weights("small-segnet", pretrained)
    return UNet(num_classes, **{"widths": (16, 32, 48, 80), **kwargs})


@register_segmenter("tiny-segnet")
def tiny_segnet(num_classes: int, image_size: int = 32, pretrained: bool = False, **kwargs) -> nn.Module:
    """A few thousand parameters, one downsampling, for unit tests."""
    _no_published_weights("tiny-segnet", pretrained)
    return UNet(num_classes, **{"widths": (8, 16), **kwargs})


# ----------------------------------------------------------------------------- lookup

# SegformerConfig fields of the published MiT encoders (NVIDIA's nvidia/mit-b0 ... nvidia/mit-b5).
_MIT_WIDE = dict(hidden_sizes=[64, 128, 320, 512], num_attention_heads=[1, 2, 5, 8], decoder_hidden_size=768)
SEGFORMER_SIZES: dict[str, dict] = {
    "mit-b0": dict(hidden_sizes=[32, 64, 160, 256], num_attention_heads=[1, 2, 5, 8], decoder_hidden_size=256,
                   depths=[2, 2, 2, 2]),
    "mit-b1": {**_MIT_WIDE, "decoder_hidden_size": 256, "depths": [2, 2, 2, 2]},
    "mit-b2": {**_MIT_WIDE, "depths": [3, 4, 6, 3]},
    "mit-b3": {**_MIT_WIDE, "depths": [3, 4, 18, 3]},
    "mit-b4": {**_MIT_WIDE, "depths": [3, 8, 27, 3]},
    "mit-b5": {**_MIT_WIDE, "depths": [3, 6, 40, 3]},
}


def resolve_segmenter(name: str) -> tuple[str, str]:
    """``(source, arch)`` with source in ``modellock``, ``torchvision``, ``segformer``; ModelLockError if unknown."""
    if name in SEGMENTERS:
        return "modellock", name
    source, _, arch = str(name).partition(":")
    if source == "torchvision":
        if arch in torchvision.models.list_models(module=torchvision.models.segmentation):
            return "torchvision", arch
    elif source == "segformer" and arch:
        if arch in SEGFORMER_SIZES or Path(arch).expanduser().is_dir() or _HUB_ID.match(arch):
            return "segformer", arch
    raise ModelLockError(
        f"unknown segmenter {name!r} (ours: {', '.join(available_segmenters())}; "
        "or torchvision:NAME of torchvision.models.segmentation, e.g. torchvision:lraspp_mobilenet_v3_large; "
        f"or segformer:{'|'.join(SEGFORMER_SIZES)}, segformer:ORG/REPO, segformer:/local/folder)"
    )


def segmenter_from_spec(spec: dict, pretrained=None) -> nn.Module:
    """The model a ``backbone_spec`` describes, fresh (no network) or with ``pretrained`` weights."""
    try:
        name, num_classes = spec["name"], spec["num_classes"]
    except (KeyError, TypeError):
        raise ModelLockError(f"segmenter spec {spec!r} lacks 'name' or 'num_classes'") from None
    if spec.get("task", "segmentation") != "segmentation":
        raise ModelLockError(f"spec of {name!r} is for task {spec.get('task')!r}, not segmentation")
    return create_segmenter(name, num_classes, spec.get("image_size", 32), pretrained, **spec.get("model_args", {}))


def create_segmenter(name: str, num_classes: int, image_size: int = 32, pretrained=None, **model_args) -> nn.Module:
    """A segmenter with ``num_classes`` output maps; see the module docstring for names and ``pretrained``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelLockError(f"segmenter {name!r}: num_classes must be a positive integer, not {num_classes!r}")
    source, arch = resolve_segmenter(name)
    if source == "segformer":
        model, model_args = _create_segformer(arch, num_classes, pretrained, model_args)
    else:
        kind, where = _resolve_pretrained(pretrained)
        if kind == "hub":
            raise ModelLockError(f"pretrained {pretrained!r} is a hub id; {name!r} takes a local .safetensors file")
        if source == "modellock":
            model = SEGMENTERS.get(arch)(num_classes, image_size, kind == "default", **model_args)
            if where is not None:
                load_pretrained(model, where, num_classes)
        else:
            model = _create_torchvision(arch, num_classes, (kind, where), model_args)
    model.backbone_spec = {
        "name": arch if source == "modellock" else f"{source}:{arch}",
        "num_classes": int(num_classes),
        "image_size": int(image_size),
        "model_args": dict(model_args),
        "task": "segmentation",
    }
    return channels_last(model)


# ----------------------------------------------------------------------------- torchvision


class _OutLogits:
    """Mixin for a torchvision segmentation model: ``forward`` returns the ``out`` logits tensor, not a dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)["out"]


_OUT_CLASSES: dict[type, type] = {}


def _out_logits(model: nn.Module) -> nn.Module:
    """The same model (same modules and state_dict keys) as a subclass whose forward returns logits only."""
    cls = type(model)
    model.__class__ = _OUT_CLASSES.setdefault(cls, type(cls.__name__, (_OutLogits, cls), {}))
    return model


def _final_convs(model: nn.Module, attr: str) -> list[str]:
    """The conv(s) giving the class maps in ``model.<attr>``: LR-ASPP's ``*classifier`` convs, else the last conv."""
    convs = [n for n, m in getattr(model, attr).named_modules() if isinstance(m, nn.Conv2d)]
    named = [n for n in convs if n.endswith("classifier")]
    return [f"{attr}.{n}" for n in (named or convs[-1:])]


def _create_torchvision(arch: str, num_classes: int, weights: tuple, model_args: dict) -> nn.Module:
    """A torchvision segmentation model; a file's aux_classifier is loaded into a temporary aux head, then dropped."""
    kind, where = weights
    if kind == "default":
        raise ModelLockError(
            f"torchvision:{arch}: published torchvision weights are pickled; "
            "save them as .safetensors and pass that file as pretrained"
        )
    if "aux_loss" in model_args:
        raise ModelLockError(f"torchvision:{arch}: aux_loss is not a model argument here (only 'out' is returned)")
    has_aux = False
    if where is not None:
        try:
            with safe_open(str(where), "pt") as f:
                has_aux = any(k.startswith("aux_classifier.") for k in f.keys())
        except Exception as e:
            raise ModelLockError(f"{where}: cannot read safetensors ({type(e).__name__}: {_first_line(e)})") from None
    try:
        model = torchvision.models.get_model(
            arch, weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=has_aux, **model_args
        )
    except (TypeError, ValueError, NotImplementedError) as e:  # bad model_args; LR-ASPP refuses aux_loss
        raise ModelLockError(f"torchvision:{arch}: cannot build with {model_args} ({_first_line(e)})") from None
    heads = _final_convs(model, "classifier")
    model.pretrained_cfg = {"classifier": heads + (_final_convs(model, "aux_classifier") if has_aux else [])}
    if where is not None:
        load_pretrained(model, where, num_classes)
    if has_aux:
        model.aux_classifier = None
    model.pretrained_cfg = {"classifier": heads}
    return _out_logits(model)


# ----------------------------------------------------------------------------- SegFormer


class SegformerSegmenter(nn.Module):
    """``SegformerForSemanticSegmentation`` with its 1/4-resolution logits upsampled to the input size."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.pretrained_cfg = {"classifier": "model.decode_head.classifier"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=x, return_dict=True).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _segformer_fields() -> list[str]:
    """The SegformerConfig arguments that describe the architecture (not PretrainedConfig's generic ones)."""
    # lazy: transformers, only for SegFormer models
    from transformers import PretrainedConfig, SegformerConfig

    generic = set(inspect.signature(PretrainedConfig.__init__).parameters)
    own = inspect.signature(SegformerConfig.__init__).parameters
    return [n for n, p in own.items() if n not in generic and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def _segformer_source(arch: str, pretrained):
    """Where to read weights from (a hub id or folder string), or None for a fresh model."""
    if pretrained is None or pretrained is False:
        return None
    if pretrained is True:
        return f"nvidia/{arch}" if arch in SEGFORMER_SIZES else arch
    return str(Path(pretrained).expanduser()) if Path(str(pretrained)).expanduser().exists() else str(pretrained)


def _hf_error(where: str, e: Exception) -> ModelLockError:
    hint = "" if Path(where).exists() else " (not a local path, so tried as a Hugging Face hub id)"
    return ModelLockError(f"cannot read pretrained {where}{hint}: {type(e).__name__}: {_first_line(e)}")


# fields that decide parameter shapes: a pretrained SegFormer must agree on them with the one asked for
_SHAPE_FIELDS = ("num_channels", "num_encoder_blocks", "depths", "sr_ratios", "hidden_sizes", "patch_sizes",
                 "mlp_ratios", "decoder_hidden_size")


def _create_segformer(arch: str, num_classes: int, pretrained, model_args: dict):
    """A SegformerSegmenter and the model_args recording its whole config (``{"config": {...}}``)."""
    # lazy: transformers, only for SegFormer models
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    fields = _segformer_fields()
    args = dict(model_args)
    overrides = {**(args.pop("config", None) or {}), **args}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ModelLockError(f"segformer:{arch}: unknown SegformerConfig fields {unknown} (known: {', '.join(fields)})")
    source = _segformer_source(arch, pretrained)
    if source is None:
        base = {} if set(fields) <= set(overrides) else _segformer_base(arch, fields)
        hf = SegformerForSemanticSegmentation(SegformerConfig(**{**base, **overrides}, num_labels=num_classes))
    else:
        if Path(source).is_file():
            raise ModelLockError(f"pretrained {source}: SegFormer weights are a save_pretrained folder or a hub id")
        _check_shapes(arch, _segformer_base(source, fields), overrides, source)
        try:
            hf = SegformerForSemanticSegmentation.from_pretrained(
                source, num_labels=num_classes, ignore_mismatched_sizes=True, use_safetensors=True,
                dtype=torch.float32, **overrides,
            )
        except Exception as e:  # offline, no such repo, no safetensors weights
            raise _hf_error(source, e) from None
    full = {f: _plain(getattr(hf.config, f)) for f in fields}
    return SegformerSegmenter(hf).train(), {"config": full}  # from_pretrained leaves eval mode; match a new module


def _segformer_base(arch: str, fields: list[str]) -> dict:
    """The architecture fields of ``mit-bN``, or of the config of a hub id / save_pretrained folder."""
    # lazy: transformers, only for SegFormer models
    from transformers import SegformerConfig

    if arch in SEGFORMER_SIZES:
        config = SegformerConfig(**SEGFORMER_SIZES[arch])
    else:
        try:
            config = SegformerConfig.from_pretrained(arch)
        except Exception as e:  # offline, no such repo, no config.json
            raise _hf_error(arch, e) from None
    return {f: _plain(getattr(config, f)) for f in fields}


def _check_shapes(arch: str, found: dict, overrides: dict, source: str) -> None:
    """ModelLockError when pretrained weights hold another architecture than the one asked for."""
    want = {**SEGFORMER_SIZES.get(arch, {}), **overrides}
    differ = {f: found[f] for f in _SHAPE_FIELDS if f in want and _plain(want[f]) != found[f]}
    if differ:
        wanted = {f: _plain(want[f]) for f in differ}
        raise ModelLockError(f"pretrained {source} holds a SegFormer with {differ}, not {wanted} of segformer:{arch}")


def _plain(value):
    """A JSON-able copy of a config value (tuples become lists)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value
