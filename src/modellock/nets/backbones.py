"""Backbone registry: ``create_backbone(name, num_classes, image_size, pretrained)`` builds a classifier.

Names are looked up in this order:
- our registered models (``@register_backbone(name)`` on a factory ``fn(num_classes, image_size, pretrained)``,
  one module of this folder each: ``simple_cnn.py`` holds ``small-cnn`` (CPU demos) and ``tiny-cnn`` (unit tests));
- ``timm:NAME`` or a plain name timm knows (``vit_base_patch16_224``, ``resnet50.a1_in1k``);
- ``torchvision:NAME`` (``torchvision:resnet18``).

``pretrained`` is None (from scratch), True (the architecture's own published weights, timm only),
a local ``.safetensors`` file, a local folder (``model.safetensors``, optionally with a timm
``config.json``), or a hub id (``hf-hub:timm/vit_base_patch16_224.mae`` or ``timm/...``, timm only,
downloaded when online). Local weights are only read with safetensors, never with pickle; hub downloads go
through timm, which takes the repo's safetensors file (else torch's restricted weights_only loader).
A pretrained classifier head whose shape does not fit ``num_classes`` is dropped and a fresh one kept.

The paper's setting:
    create_backbone("vit_base_patch16_224", num_classes=38, image_size=224,
                    pretrained="hf-hub:timm/vit_base_patch16_224.mae")
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ..errors import ModelLockError
from ..utils.registry import Registry

log = logging.getLogger(__name__)

# our backbones: a factory ``fn(num_classes, image_size, pretrained=False, **kwargs)`` per name, each registered in
# its own module of this folder (``simple_cnn.py``: small-cnn, tiny-cnn) or by an installed plugin
BACKBONES = Registry("backbone", package="modellock.nets", helpers=("adapters", "backbones", "heads"),
                     group="backbones")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.safetensors")


def register_backbone(name: str):
    """Decorator adding a factory ``fn(num_classes, image_size, pretrained=False, **kwargs)`` under ``name``."""
    return BACKBONES.register(name)


def available_backbones() -> list[str]:
    """Our registered names (timm and torchvision names come on top)."""
    return BACKBONES.names()


# ----------------------------------------------------------------------------- lookup


def resolve_backbone(name: str) -> tuple[str, str]:
    """``(source, arch)`` with source in ``modellock``, ``timm``, ``torchvision``; ModelLockError if unknown."""
    if name in BACKBONES:
        return "modellock", name
    source, _, arch = name.partition(":") if ":" in name else ("", "", name)
    if source in ("", "timm"):
        # lazy: timm, only for timm backbones
        import timm.models

        if arch and timm.models.is_model(timm.models.split_model_name_tag(arch)[0]):
            return "timm", arch
    elif source == "torchvision":
        if arch in torchvision.models.list_models():
            return "torchvision", arch
    raise ModelLockError(
        f"unknown backbone {name!r} (ours: {', '.join(available_backbones())}; "
        "or a timm model name, timm:NAME, torchvision:NAME)"
    )


def backbone_spec(name: str, num_classes: int, image_size: int = 32, **model_args) -> dict:
    """A JSON-able record of an architecture; ``backbone_from_spec`` rebuilds it (without weights)."""
    source, arch = resolve_backbone(name)
    return {
        "name": arch if source == "modellock" else f"{source}:{arch}",
        "num_classes": int(num_classes),
        "image_size": int(image_size),
        "model_args": dict(model_args),
    }


def backbone_from_spec(spec: dict, pretrained=None) -> nn.Module:
    """The model a ``backbone_spec`` describes, fresh or with ``pretrained`` weights."""
    try:
        name, num_classes = spec["name"], spec["num_classes"]
    except (KeyError, TypeError):
        raise ModelLockError(f"backbone spec {spec!r} lacks 'name' or 'num_classes'") from None
    return create_backbone(name, num_classes, spec.get("image_size", 32), pretrained, **spec.get("model_args", {}))


def create_backbone(
    name: str, num_classes: int, image_size: int = 32, pretrained=None, **model_args
) -> nn.Module:
    """A classifier with ``num_classes`` outputs; see the module docstring for names and ``pretrained``.

    The returned model carries ``model.backbone_spec`` (see ``backbone_spec``) for a config.json.
    """
    source, arch = resolve_backbone(name)
    weights = _resolve_pretrained(pretrained)
    if source == "timm":
        model, hub_args = _create_timm(arch, num_classes, image_size, weights, model_args)
        model_args = {**hub_args, **model_args}
    else:
        if weights[0] in ("hub", "timm-folder"):
            raise ModelLockError(f"pretrained {pretrained!r} holds timm weights; {name!r} is not a timm model")
        if source == "modellock":
            model = BACKBONES.get(arch)(num_classes, image_size, weights[0] == "default", **model_args)
        else:
            model = _create_torchvision(arch, num_classes, weights, model_args)
        if weights[0] == "file":
            load_pretrained(model, weights[1], num_classes)
    model.backbone_spec = backbone_spec(name, num_classes, image_size, **model_args)
    return channels_last(model)


def channels_last(model: nn.Module) -> nn.Module:
    """``model`` (in place) fed its images in channels-last layout, a forward pre-hook on the root module: on one
    CPU core small-cnn trains about 1.3x and predicts 1.6x faster (bench/train_speed.py), the same function up to
    float rounding. The weights keep their layout, so a state dict saves as before."""
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model.register_forward_pre_hook(_images_channels_last)
    return model


def _images_channels_last(module: nn.Module, args: tuple):
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def _create_torchvision(arch: str, num_classes: int, weights: tuple, model_args: dict) -> nn.Module:
    if weights[0] == "default":
        raise ModelLockError(
            f"torchvision:{arch}: published torchvision weights are pickled; "
            "save them as .safetensors and pass that file as pretrained"
        )
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **model_args)


def _create_timm(arch: str, num_classes: int, image_size: int, weights: tuple, model_args: dict):
    """A timm model; pretrained weights go through timm so that its filters (e.g. pos-embed resizing) apply."""
    # lazy: timm, only for timm backbones
    import timm
    import timm.models
    from timm.models._hub import load_model_config_from_path

    kind, where = weights
    where = where or f"published weights of {arch}"
    cfg_arch, hub_args, kwargs = None, {}, {}
    try:
        if kind == "hub":
            cfg, cfg_arch, hub_args = timm.models.load_model_config_from_hf(where)
            kwargs = dict(pretrained=True, pretrained_cfg=cfg)
        elif kind == "timm-folder":
            cfg, cfg_arch, hub_args = load_model_config_from_path(where.parent)
            cfg.update(file=str(where), source=None)  # exactly this safetensors file, never a pickled sibling
            kwargs = dict(pretrained=True, pretrained_cfg=cfg)
        elif kind == "file":
            overlay = dict(file=str(where), source=None, num_classes=_file_head_rows(arch, where))
            kwargs = dict(pretrained=True, pretrained_cfg_overlay=overlay)
        elif kind == "default":
            kwargs = dict(pretrained=True)
    except Exception as e:  # offline, no such repo, unreadable config or weights
        hint = " (not a local path, so tried as a Hugging Face hub id)" if kind == "hub" else ""
        raise ModelLockError(f"cannot read pretrained {where}{hint}: {type(e).__name__}: {_first_line(e)}") from None
    base = timm.models.split_model_name_tag(arch)[0]
    if cfg_arch is not None and timm.models.split_model_name_tag(cfg_arch)[0] != base:
        raise ModelLockError(f"pretrained {where} holds a {cfg_arch!r}, not a {base!r}")
    if kind in ("hub", "timm-folder"):
        arch = base  # the pretrained cfg comes from the hub/folder, not from a tag
    if timm.models.get_pretrained_cfg(base) is None or timm.models.get_pretrained_cfg(base).fixed_input_size:
        kwargs["img_size"] = image_size
    # saved model_args describe the source weights; the target's num_classes and img_size are ours to set
    hub_args = {k: v for k, v in hub_args.items() if k not in ("num_classes", "img_size", "pretrained_model_args")}
    args = {**hub_args, **model_args}
    try:
        try:
            model = timm.create_model(arch, num_classes=num_classes, **kwargs, **args)
        except TypeError as e:  # a model without img_size
            if "img_size" not in str(e):
                raise
            kwargs.pop("img_size")
            model = timm.create_model(arch, num_classes=num_classes, **kwargs, **args)
    except Exception as e:  # shape mismatches outside the head, download failures
        if kind == "none":
            raise
        raise ModelLockError(f"cannot load pretrained {where} into timm:{arch}: {_first_line(e)}") from None
    if kind == "file":
        heads = _head_names(model, num_classes)
        _check_keys(model, where, heads)
        if overlay["num_classes"] not in (0, num_classes):
            log.warning("%s: skipped classifier %s (%d classes, not %d; fresh head kept)",
                        where, ", ".join(heads), overlay["num_classes"], num_classes)
    return model, hub_args


# ----------------------------------------------------------------------------- pretrained weights

_HUB_ID = re.compile(r"^(hf-hub:)?[\w.-]+/[\w.-]+(@[\w./-]+)?$")


def _resolve_pretrained(pretrained) -> tuple[str, object]:
    """``(kind, where)``: none, default, file (a .safetensors Path), timm-folder (its weights Path) or hub (an id)."""
    if pretrained is None or pretrained is False:
        return "none", None
    if pretrained is True:
        return "default", None
    text = str(pretrained)
    path = Path(text).expanduser()
    if path.is_dir():
        found = [path / f for f in WEIGHT_FILES if (path / f).is_file()]
        if not found:
            raise ModelLockError(
                f"{path}: no {' or '.join(WEIGHT_FILES)} in this folder (pickled .bin/.pth weights are not loaded)"
            )
        config = _read_json(path / "config.json") if (path / "config.json").is_file() else {}
        if "architecture" in config and not str(config.get("format", "")).startswith("modellock-model/"):
            return "timm-folder", found[0]
        return "file", found[0]  # a bare weights folder, or a modellock model folder (e.g. the original model)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ModelLockError(f"{path}: pretrained weights must be a .safetensors file (pickle is not loaded)")
        return "file", path
    if _HUB_ID.match(text) and not text.endswith(".safetensors"):
        return "hub", text.removeprefix("hf-hub:")
    raise ModelLockError(f"pretrained weights not found: {text}")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLockError(f"{path}: cannot read JSON ({e})") from None
    return data if isinstance(data, dict) else {}


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return "; ".join(lines[:3])


def _head_names(model: nn.Module, num_classes: int) -> list[str]:
    """The classifier's module names: timm's pretrained_cfg says, else the last Linear/Conv with num_classes outputs."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    heads = cfg.get("classifier")
    if heads:
        return [heads] if isinstance(heads, str) else list(heads)
    last = [n for n, m in model.named_modules() if getattr(m, "out_features", getattr(m, "out_channels", None)) == num_classes]
    return last[-1:]


def _is_head(key: str, heads: list[str]) -> bool:
    return any(key == h or key.startswith(h + ".") for h in heads)


def _file_head_rows(arch: str, path: Path) -> int:
    """How many classes the head in a safetensors file has (0 when it has none), read without loading tensors."""
    # lazy: timm, only for timm backbones
    import timm.models

    heads = timm.models.get_pretrained_cfg(timm.models.split_model_name_tag(arch)[0])
    heads = heads.classifier if heads and heads.classifier else "head"
    heads = [heads] if isinstance(heads, str) else list(heads)
    with safe_open(str(path), "pt") as f:
        for key in f.keys():
            if key == heads[0] + ".weight":
                return f.get_slice(key).get_shape()[0]
    return 0


def _check_keys(model: nn.Module, path: Path, heads: list[str]) -> None:
    """ModelLockError when a file lacks parameters of the model outside the head."""
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
    missing = [k for k in model.state_dict() if k not in keys and not _is_head(k, heads)]
    if missing:
        raise ModelLockError(f"pretrained {path} lacks {len(missing)} weights of the model, e.g. {missing[:3]}")


def load_pretrained(model: nn.Module, path, num_classes: int) -> list[str]:
    """Load a .safetensors state dict into ``model``; the keys of a head that does not fit are skipped and returned.

    Any other missing, unexpected or mismatched key is a ModelLockError naming the file.
    """
    path = Path(path)
    try:
        state = load_file(str(path))
    except Exception as e:
        raise ModelLockError(f"{path}: cannot read safetensors ({type(e).__name__}: {e})") from None
    heads = _head_names(model, num_classes)
    own = model.state_dict()
    skipped = [k for k, v in state.items() if _is_head(k, heads) and k in own and own[k].shape != v.shape]
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape and k not in skipped]
    if bad:
        k = bad[0]
        raise ModelLockError(
            f"{path}: {len(bad)} weights do not fit the model, e.g. {k} is {tuple(state[k].shape)}, "
            f"the model wants {tuple(own[k].shape)}"
        )
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not _is_head(k, heads)]
    if unexpected or missing:
        raise ModelLockError(
            f"{path}: keys do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for k in skipped:
        del state[k]
    model.load_state_dict(state, strict=False)
    if skipped:
        log.warning("%s: skipped classifier weights %s (they do not fit %d classes; fresh head kept)",
                    path, ", ".join(skipped), num_classes)
    return skipped
