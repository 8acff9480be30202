"""Lock/train settings from a YAML file and command-line flags (flags win), checked by name, type and range.

The types and ranges are those annotated on ``LockRecipe`` and ``TrainConfig`` (and ``RUN_TYPES`` here), checked
with pydantic (``modellock.utils.fields``): a YAML value and a flag go through the same check, and an error names the
field and the file (``config file lock.yaml: epochs: input should be a valid integer, ..., not 'one'``) or the
flag (``--epochs: input should be greater than or equal to 1, not 0``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Optional

import yaml
from pydantic import Field

from ..errors import ModelLockError
from ..train import TrainConfig
from ..utils.fields import NUMBER, Count, field_types, validate_values
from .hardening import HardenSettings
from .lock_set import HARDEN_FIELDS, LockRecipe

MIN_IMAGE_SIZE = 8  # pixels, as the data checks' smallest image
RECIPE_FIELDS = {f.name for f in dataclasses.fields(LockRecipe)} - {"seed", "harden"} | set(HARDEN_FIELDS)  # flat
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
_NAME = Annotated[str, Field(min_length=1)]
RUN_TYPES: dict[str, Any] = {"model": _NAME, "pretrained": _NAME, "split": _NAME, "edits": _NAME,
                             "image_size": Annotated[int, NUMBER, Field(ge=MIN_IMAGE_SIZE)],
                             "train_limit": Count, "test_limit": Count}
RUN_FIELDS = set(RUN_TYPES)
SETTING_TYPES: dict[str, Any] = {name: Optional[t] for name, t in
                                 {**{k: v for k, v in field_types(LockRecipe).items() if k != "harden"},
                                  **{k: field_types(HardenSettings)[k] for k in HARDEN_FIELDS},
                                  **field_types(TrainConfig), **RUN_TYPES}.items()}


def default(cls, name: str):
    """The default of field ``name`` of a settings dataclass (for help texts)."""
    return cls.__dataclass_fields__[name].default


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def load_settings(config: Path | None, **flags) -> dict:
    """Merge a YAML mapping with flags that were given (not None); unknown YAML keys and values of the wrong
    type or out of range are errors naming the field and the file (or the flag)."""
    settings: dict = {}
    if config is not None:
        where = f"config file {config}: "
        try:
            loaded = yaml.safe_load(Path(config).read_text()) or {}
        except FileNotFoundError:
            raise ModelLockError(f"config file {config}: not found") from None
        except (OSError, yaml.YAMLError) as e:
            raise ModelLockError(f"config file {config}: not valid YAML ({type(e).__name__})") from None
        if not isinstance(loaded, dict):
            raise ModelLockError(f"config file {config}: expected a mapping of settings")
        named = {str(name).replace("-", "_"): value for name, value in loaded.items()}
        shown = {str(name).replace("-", "_"): str(name) for name in loaded}
        _flatten_harden(named, shown, where)
        settings.update(validate_values(SETTING_TYPES, named, where, shown))
    given = {k: v for k, v in flags.items() if v is not None}
    settings.update(validate_values(SETTING_TYPES, given, names={k: flag_name(k) for k in given}))
    return {k: v for k, v in settings.items() if v is not None}


def _flatten_harden(named: dict, shown: dict, where: str) -> None:
    """A YAML ``harden:`` mapping (as ``LockRecipe(harden=HardenSettings(...))`` nests it) read as its flat levers."""
    if "harden" not in named:
        return
    nested = named.pop("harden")
    label = shown.pop("harden")
    if not isinstance(nested, dict):
        raise ModelLockError(f"{where}{label}: expected a mapping of hardening levers ({', '.join(HARDEN_FIELDS)}), "
                             f"not {nested!r}")
    for name, value in nested.items():
        field = str(name).replace("-", "_")
        if field not in HARDEN_FIELDS:
            raise ModelLockError(f"{where}{label}.{name}: unknown hardening lever (one of {', '.join(HARDEN_FIELDS)})")
        if field in named:
            raise ModelLockError(f"{where}{field} given both flat and under {label}:")
        named[field], shown[field] = value, f"{label}.{name}"


def _build(cls, fields: set, settings: dict, where: str):
    values = {k: settings[k] for k in fields if k in settings}
    try:
        return cls(**values)
    except TypeError as e:
        raise ModelLockError(f"{where}: {e}") from None


def recipe_from(settings: dict) -> LockRecipe:
    """The recipe of flat settings (a YAML file's and the flags': the hardening levers by name, not nested)."""
    values = {k: settings[k] for k in RECIPE_FIELDS if k in settings}
    try:
        recipe = LockRecipe.from_dict(values)
    except TypeError as e:
        raise ModelLockError(f"lock recipe: {e}") from None
    recipe.seed = int(settings.get("seed", recipe.seed))
    return recipe


def train_config_from(settings: dict) -> TrainConfig:
    return _build(TrainConfig, TRAIN_FIELDS, settings, "train config")
