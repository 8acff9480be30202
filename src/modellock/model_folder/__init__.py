"""The locked model folder: weights (plain ``model.safetensors`` or sealed ``model.sealed``), ``config.json``
(``config.py``: its typed fields, check, read and write), the ``README.md`` model card (``card.py``), what the
folder keeps of evaluations and attacks (``stored.py``), ``LockedModel`` (``folder.py``) and its ``Predictor``
(``predictor.py``)."""

from .card import render_card
from .config import (CARD, CONFIG, FORMAT, SEALED, SEALED_FIELDS, WEIGHTS, WRONG_KEY, ModelFolderConfig, check_config,
                     library_versions, read_config, sealed_context, write_config)
from .folder import LockedModel, holds_model
from .predictor import Predictor
from .stored import stored_attack_summary, stored_evaluation

__all__ = ["LockedModel", "Predictor", "ModelFolderConfig", "holds_model", "check_config", "read_config",
           "write_config", "library_versions", "sealed_context", "render_card", "stored_evaluation",
           "stored_attack_summary", "FORMAT", "CONFIG", "WEIGHTS", "SEALED", "CARD", "SEALED_FIELDS", "WRONG_KEY"]
