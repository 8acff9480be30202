"""Lock/train settings from a YAML file and command-line flags (flags win), checked by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from .errors import ModelLockError
from .lockset import LockRecipe
from .train import TrainConfig

RECIPE_FIELDS = {f.name for f in dataclasses.fields(LockRecipe)} - {"seed"}
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
RUN_FIELDS = {"model", "pretrained", "image_size", "train_limit", "test_limit", "split", "edits"}


def load_settings(config: Path | None, **flags) -> dict:
    """Merge a YAML mapping with flags that were given (not None); unknown YAML keys are errors."""
    settings: dict = {}
    if config is not None:
        try:
            loaded = yaml.safe_load(Path(config).read_text()) or {}
        except FileNotFoundError:
            raise ModelLockError(f"config file {config}: not found") from None
        except (OSError, yaml.YAMLError) as e:
            raise ModelLockError(f"config file {config}: not valid YAML ({type(e).__name__})") from None
        if not isinstance(loaded, dict):
            raise ModelLockError(f"config file {config}: expected a mapping of settings")
        known = RECIPE_FIELDS | TRAIN_FIELDS | RUN_FIELDS
        for name in loaded:
            norm = str(name).replace("-", "_")
            if norm not in known:
                raise ModelLockError(f"config file {config}: unknown setting {name!r}")
            settings[norm] = loaded[name]
    settings.update({k: v for k, v in flags.items() if v is not None})
    return settings


def _build(cls, fields: set, settings: dict, where: str):
    values = {k: settings[k] for k in fields if k in settings}
    try:
        return cls(**values)
    except TypeError as e:
        raise ModelLockError(f"{where}: {e}") from None


def recipe_from(settings: dict) -> LockRecipe:
    recipe = _build(LockRecipe, RECIPE_FIELDS, settings, "lock recipe")
    recipe.seed = int(settings.get("seed", recipe.seed))
    return recipe


def train_config_from(settings: dict) -> TrainConfig:
    return _build(TrainConfig, TRAIN_FIELDS, settings, "train config")
