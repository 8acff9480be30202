"""``build_evidence``: the owner's verification record (``record.py``) from the locked model, its key and data.

Steps: open the locked weights with the key; read the held-out split at the model's input size; pick the
sample sets (``samples.py``); record the owner's answers, locked and unlocked; train (or load) the independent
models and record theirs; save the record (0600). The key itself is used, never stored.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..editors import get_editor, resolve_key
from ..errors import ModelLockError
from ..keys.prompts import compose_prompt
from ..model_folder import LockedModel
from ..tasks import task_type
from ..version import __version__
from .calibration import train_independent
from .record import Evidence
from .samples import cutmix
from .suspects import model_outputs
from .weights import layers, similarity, sketch

DEFAULTS = dict(n_wrong=50, n_cutmix=50, n_key=33, wrong_keys=4, alpha=0.01, independent=6, pool=1000)
METHODS = ("sac-w", "sac-m", "key-feature", "key-response")


def build_evidence(model, key, source, out: str | Path | None = None, split: str = "test",
                   train_split: str = "train", independent: int = DEFAULTS["independent"],
                   independent_models=(), independent_arch: str | None = None,
                   independent_epochs: int | None = None, independent_limit: int | None = None,
                   n_wrong: int = DEFAULTS["n_wrong"], n_cutmix: int = DEFAULTS["n_cutmix"],
                   n_key: int = DEFAULTS["n_key"], wrong_keys: int = DEFAULTS["wrong_keys"],
                   every_wrong_key: bool = False, alpha: float = DEFAULTS["alpha"], pool: int = DEFAULTS["pool"],
                   work_dir: str | Path | None = None, log=print) -> Evidence:
    """The evidence for ``model`` (a ``LockedModel``, sealed or not) and ``key``, from ``source``'s ``split``.

    ``independent`` models are trained from scratch on ``train_split`` (``independent_arch``, default the
    owner's; ``independent_epochs``, default the owner's up to 10; ``independent_limit`` images at most), kept
    in ``work_dir`` and reused on a rerun (without one, in a temporary folder removed at the end);
    ``independent_models`` adds model folders trained elsewhere. The samples are drawn from ``pool`` held-out
    images, each edited with the key once; the ``n_key`` key-feature images also with ``wrong_keys`` random wrong
    keys (prompts drawn with ``secrets`` and forgotten): image ``i`` with key ``i mod wrong_keys``, or with
    ``every_wrong_key`` each with every one (``wrong_keys`` times the queries). Writes the record to ``out`` when
    given.
    """
    with tempfile.TemporaryDirectory(prefix="modellock-evidence-") as tmp:
        return _build(model, key, source, out, split, train_split, independent, independent_models,
                      independent_arch, independent_epochs, independent_limit, n_wrong, n_cutmix, n_key, wrong_keys,
                      every_wrong_key, alpha, pool, Path(work_dir) if work_dir else Path(tmp), log)


def _build(model, key, source, out, split, train_split, independent, independent_models, independent_arch,
           independent_epochs, independent_limit, n_wrong, n_cutmix, n_key, wrong_keys, every_wrong_key, alpha, pool,
           work: Path, log) -> Evidence:
    t0 = time.time()
    if not model.config.get("lock"):
        raise ModelLockError("evidence: the model is not locked (give the locked model folder)")
    for name, value in (("n_wrong", n_wrong), ("n_cutmix", n_cutmix), ("n_key", n_key)):
        if not isinstance(value, int) or value < 4:
            raise ModelLockError(f"evidence: {name} must be an integer of at least 4, not {value!r}")
    if not isinstance(wrong_keys, int) or not 1 <= wrong_keys <= 16:
        raise ModelLockError(f"evidence: wrong_keys must be an integer from 1 to 16, not {wrong_keys!r}")
    if not 0 < alpha < 1:
        raise ModelLockError(f"evidence: alpha must be in (0, 1), not {alpha!r}")
    if source.task != model.task:
        raise ModelLockError(f"evidence: the data is for {source.task}, the model for {model.task}")
    if list(source.classes) != model.classes:
        raise ModelLockError(f"evidence: the data's classes ({', '.join(source.classes[:5])}...) differ from the "
                             f"model's ({', '.join(model.classes[:5])}...)")
    if independent + len(independent_models) < 3:
        raise ModelLockError("evidence: the thresholds need at least 3 independent models (--independent-count "
                             "plus --independent folders)")
    model.unlock(key)  # WrongKeyError unless the key is the model's
    opened = model.open(key)
    task, size, k = model.task, model.image_size, model.config["num_classes"]
    tt = task_type(task)
    seed = secrets.randbits(32)  # the sample draw: not guessable from the toolkit's defaults
    rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ the held-out pool
    data = source.split(split).subset(pool, seed % 1000)
    if len(data) < 8:
        raise ModelLockError(f"evidence: split {split!r} has {len(data)} images; at least 8 are needed")
    log(f"reading {len(data)} {split} images")
    pool_images = [tt.model_view(data.load(s), size) for s in data.samples]
    transform = opened.inference_transform()
    editor = get_editor(resolve_key(key, opened.model, size))
    wrong_editors = [get_editor(resolve_key(key.replace(prompt=compose_prompt()[0]), opened.model, size))
                     for _ in range(wrong_keys)]
    pool_edited = editor.edit(pool_images)
    unlocked = model_outputs(opened.model, pool_edited, transform, task, k)

    # ------------------------------------------------------------------ the sample sets
    targets = [tt.evidence_target(data, s, size) for s in data.samples]
    wrong = tt.worst_first(opened.model, pool_edited, transform, unlocked["probs"], targets, n_wrong, k,
                           model.ignore_index)
    mixed = cutmix(pool_images, n_cutmix, rng)
    rest = np.setdiff1d(np.arange(len(pool_images)), wrong)
    key_idx = rng.choice(rest if len(rest) >= n_key else np.arange(len(pool_images)),
                         min(n_key, len(pool_images)), replace=False)
    key_images = [pool_images[i] for i in key_idx]
    images = {
        "sac_w": np.stack([pool_images[i] for i in wrong]),
        "sac_w_key": np.stack([pool_edited[i] for i in wrong]),
        "sac_m": np.stack(mixed),
        "sac_m_key": np.stack(editor.edit(mixed)),
        "key_clean": np.stack(key_images),
        "key_edited": np.stack([pool_edited[i] for i in key_idx]),
        "key_wrong": _wrong_edits(wrong_editors, key_images, every_wrong_key),
    }
    truth = np.stack([tt.truth_distribution(targets[i], k, model.ignore_index) for i in key_idx])
    n_wrong_found = int(sum(1 for i in wrong if tt.answer_is_wrong(unlocked["probs"][i], targets[i])))
    owner: dict[str, dict[str, np.ndarray]] = {}
    for s_, ims in images.items():
        for mode, a in model_outputs(opened.model, list(ims), transform, task, k).items():
            owner.setdefault(mode, {})[s_] = a

    # ------------------------------------------------------------------ independent models
    calibration, outputs, independents = [], [], []
    spec = model.config["architecture"]
    arch = independent_arch or spec["name"]
    epochs = independent_epochs or min(int((model.config.get("training") or {}).get("epochs") or 10), 10)
    lr = float((model.config.get("training") or {}).get("lr") or 1e-3)
    for i in range(independent):
        log(f"training independent model {i + 1}/{independent} ({arch}, {epochs} epochs, seed {1000 + i})")

        m = train_independent(source, arch, 1000 + i, epochs, work / f"independent-{i}", size, train_split, lr,
                              limit=independent_limit)
        calibration.append({"source": "trained", "architecture": arch, "seed": 1000 + i, "epochs": epochs,
                            "limit": independent_limit})
        outputs.append(_suspect_answers(m, images))
        independents.append(m)
    for folder in independent_models:
        m = LockedModel.from_pretrained(folder, device="cpu")
        if m.task != task:
            raise ModelLockError(f"{folder}: a {m.task} model; the evidence is for {task}")
        calibration.append({"source": "given", "name": Path(folder).name,
                            "architecture": m.config["architecture"].get("name")})
        outputs.append(_suspect_answers(m, images))
        independents.append(m)

    weights_seed = secrets.randbits(32)
    owner_sketch = sketch(opened.model, weights_seed)
    shapes = [tuple(w.shape) for _, w in layers(opened.model)]
    null_models = [m.model for m in independents]
    null_models += [_fresh(spec, 2000 + i, task) for i in range(max(0, 3 - sum(
        similarity(owner_sketch, shapes, weights_seed, m) is not None for m in null_models)))]
    weight_null = [x for x in (similarity(owner_sketch, shapes, weights_seed, m) for m in null_models) if x is not None]

    meta = {
        "task": task, "classes": model.classes, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "preprocessing": {k_: opened.config["preprocessing"][k_] for k_ in ("image_size", "mean", "std")},
        "owner": {"architecture": spec.get("name"), "weights_sha256": model.config.get("weights_sha256"),
                  "editor": (model.config.get("lock") or {}).get("editor"), "path": str(model.path or "")},
        "settings": {"alpha": alpha, "methods": list(METHODS), "split": split, "pool": len(data),
                     "n_wrong": n_wrong, "wrong_found": n_wrong_found, "n_cutmix": n_cutmix, "n_key": len(key_idx),
                     "wrong_keys": wrong_keys,
                     "wrong_per_image": wrong_keys if every_wrong_key else 1, "cutmix_area": [0.25, 0.5]},
        "calibration": calibration,
        "weights": {"seed": weights_seed, "shapes": [list(x) for x in shapes], "independent": weight_null,
                    "from": "independent models" if len(weight_null) == len(independents) else
                    "independent models and fresh initialisations of the owner's architecture"},
        "seconds": round(time.time() - t0, 1),
    }

    meta["modellock_version"] = __version__
    evidence = Evidence(meta, images, owner, outputs, truth, owner_sketch)
    if out is not None:
        evidence.save(out)
    return evidence


def _wrong_edits(editors, images, every: bool) -> np.ndarray:
    """Image ``i`` edited with wrong key ``i mod W`` (``W`` = ``len(editors)``); with ``every``, each image with every
    key, ``W`` consecutive rows per image."""
    if every:
        edits = np.stack([np.stack(e.edit(images)) for e in editors], axis=1)  # N x W x S x S x 3
        return edits.reshape(-1, *edits.shape[2:])
    out = np.empty((len(images), *np.asarray(images[0]).shape), dtype=np.uint8)
    for j, e in enumerate(editors):
        if len(images[j::len(editors)]):
            out[j::len(editors)] = np.stack(e.edit(images[j::len(editors)]))
    return out


def _fresh(spec: dict, seed: int, task: str):
    """The owner's architecture, freshly initialised (a null for the weights test when too few independent models
    share the architecture)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return task_type(task).model_from_spec(spec)


def _suspect_answers(model, images: dict) -> dict[str, dict[str, np.ndarray]]:
    """A model folder's answers on every sample set, per mode (as ``verify`` asks a white-box suspect)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for s, ims in images.items():
        for mode, a in model_outputs(model.model, list(ims), model.inference_transform(), model.task,
                                     model.config["num_classes"]).items():
            out.setdefault(mode, {})[s] = a
    return out
