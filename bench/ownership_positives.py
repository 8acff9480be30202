"""The positives of the ownership benchmark: models a thief derives from the *opened* locked model.

Families (each model saved under ``<out>/positives/<family>/<name>/``):

- ``fine-tune``: a fresh head, then the attack suite's quick grid (AdamW at the lock's lr and 10x, SGD at 10x,
  the whole model or the head only; 4,000 samples a cell) on 1 / 5 / 10 % of the owner's training split; the
  best and the worst cell (test score) of each fraction are kept;
- ``adapter``: the attack suite's input adapter and U-Net adapter trained in front of the frozen locked network
  (1 % and 10 %);
- ``pruned``: global L1 magnitude pruning of 30 / 50 / 70 % of the conv and linear weights, of the locked network
  and of the best 10 % fine-tune;
- ``int8``: dynamic int8 quantisation (``torch.ao.quantization.quantize_dynamic``, Linear layers) of the locked
  network and of the best 10 % fine-tune;
- ``distilled``: a student of the owner's architecture trained from scratch on the answers of ``modellock serve``
  (the real service, over HTTP, unlocking with the key on the server) to 1k and 10k of the thief's unlabelled
  images: labels only (the top class) and probabilities (classification);
- ``transfer``: the locked trunk with a fresh head for another class set, trained on 10 % (classification: animal /
  vehicle, and the first five classes; segmentation: background / shape): the whole model fine-tuned, and the head
  alone on the frozen trunk (``-head``: a linear probe, the cheap transfer).

Plain networks are saved as model folders (``verify --suspect`` reads them); composite ones (adapter + locked,
int8) as a ``recipe.json`` that ``load_positive`` rebuilds.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

FRACTIONS = (0.01, 0.05, 0.1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Sliced(nn.Module):
    """A network's first ``k`` outputs (a thief's copy drops the locked output)."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x):
        return self.model(x)[:, : self.k]


def _config(owner_config: dict, num_outputs: int, classes: list[str] | None = None, arch: dict | None = None) -> dict:
    config = copy.deepcopy(owner_config)
    config["lock"] = None
    config.pop("evaluation", None)
    config.pop("attack_summary", None)
    config.pop("weights_sha256", None)
    if classes is not None:
        config["classes"], config["num_classes"], config["locked_class"] = list(classes), len(classes), None
    config["architecture"] = {**(arch or config["architecture"]), "num_classes": num_outputs}
    return config


def save_plain(model: nn.Module, owner_config: dict, folder: Path, classes=None, info: dict | None = None) -> None:
    """A plain network as a model folder (outputs beyond the classes: the locked output, kept)."""
    from modellock.model_folder import LockedModel

    size = owner_config["preprocessing"]["image_size"]
    with torch.no_grad():
        outputs = int(model.eval()(torch.zeros(1, 3, size, size)).shape[1])
    config = _config(owner_config, outputs, classes)
    if classes is None and outputs == owner_config["num_classes"]:  # a fresh head over the real classes
        config["classes"] = config["classes"][: outputs]
        config["locked_class"] = None
    config["positive"] = info or {}
    LockedModel(model.cpu().eval(), config).save_pretrained(folder)


def load_positive(folder: Path, locked_folder: Path, key) -> tuple[nn.Module, dict]:
    """``(network over the owner's real classes or its own, config)`` of a saved positive."""
    from modellock.model_folder import LockedModel

    recipe = folder / "recipe.json"
    if not recipe.exists():
        m = LockedModel.from_pretrained(folder, device="cpu")
        k = m.config["num_classes"]
        return (Sliced(m.model, k) if len(m.config["classes"]) > k else m.model), m.config
    r = json.loads(recipe.read_text())
    base = LockedModel.from_pretrained(locked_folder if r["base"] == "locked" else folder.parents[1] / r["base"],
                                       device="cpu")
    base = base.open(key) if base.is_sealed else base
    k = base.config["num_classes"]
    net = copy.deepcopy(base.model)
    if r["kind"] == "int8":
        net = torch.ao.quantization.quantize_dynamic(net.eval(), {nn.Linear}, dtype=torch.qint8)
    elif r["kind"] == "adapter":
        from safetensors.torch import load_file

        from modellock.attacks.input_adapter import InputAdapter, UNetAdapter

        adapter = InputAdapter() if r["adapter"] == "input" else UNetAdapter()
        adapter.load_state_dict(load_file(str(folder / "adapter.safetensors")))
        net = nn.Sequential(adapter.eval(), net)
    return (Sliced(net, k) if len(base.config["classes"]) > k else net).eval(), base.config


def _ctx(task: str, out: Path, opened, source, key):
    from modellock.attacks.context import AttackContext, Machinery

    return AttackContext(opened, source, Machinery.of(key), fractions=FRACTIONS, budget="quick", progress=False,
                         seed=0, train_batch_size=64 if task == "classification" else 32)


FAMILIES = ("fine-tune", "adapter", "pruned", "int8", "transfer", "distilled")


def positives(task: str, out: Path, families=FAMILIES) -> None:
    from ownership_models import key_for, open_data

    from modellock.model_folder import LockedModel

    source = open_data(task, out)
    key = key_for(out)
    locked = LockedModel.from_pretrained(out / "locked", device="cpu")
    opened = locked.open(key)
    ctx = _ctx(task, out, opened, source, key)
    root = out / "positives"
    t0 = time.time()
    if "fine-tune" in families:
        best10 = _fine_tunes(ctx, opened, root / "fine-tune")
    else:  # the 10 % fine-tune made earlier, if any (the pruned and int8 copies of it)
        best10 = "10pct-best" if _done(root / "fine-tune" / "10pct-best") else None
    if "adapter" in families:
        _adapters(ctx, opened, root / "adapter")
    if "pruned" in families:
        _pruned(opened, root / "pruned", best10)
    if "int8" in families and best10:
        _int8(root / "int8", best10, task)
    if "transfer" in families:
        _transfer(ctx, opened, source, root / "transfer")
    if "distilled" in families:
        _distilled(ctx, opened, out, root / "distilled")
    log(f"positives: {time.time() - t0:.0f} s")


def _done(folder: Path) -> bool:
    return (folder / "model.safetensors").exists() or (folder / "recipe.json").exists()


def _fine_tunes(ctx, opened, root: Path) -> str:
    """Every cell of the grid per fraction; keeps the best and the worst; returns the best 10 % one's name."""
    from modellock.attacks.grid import cell_name
    from modellock.nets.heads import PartlyFrozen, set_trainable, with_fresh_head

    k, outputs = ctx.num_classes, ctx.num_outputs
    cells = [("adamw", 1.0, "whole"), ("adamw", 10.0, "whole"), ("sgd", 10.0, "whole"), ("adamw", 1.0, "head"),
             ("adamw", 10.0, "head")]
    best_name = ""
    for fraction in FRACTIONS:
        label = f"{fraction * 100:g}pct"
        summary = root / f"{label}.json"
        if summary.exists():
            best_name = json.loads(summary.read_text())["best"] if fraction == max(FRACTIONS) else best_name
            continue
        split = ctx.attacker_split(fraction)
        scored = []
        for optimizer, factor, part in cells:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = with_fresh_head(opened.model, outputs, k)
            frozen = set_trainable(model, part, k)
            try:
                model = ctx.train(PartlyFrozen(model, frozen), split, f"fine-tune {label}", lr=ctx.lr * factor,
                                  optimizer=optimizer).model
            except Exception as e:  # noqa: BLE001 - a diverged cell is no positive
                log(f"fine-tune {label} {optimizer} {factor} {part}: {e}")
                continue
            for p in model.parameters():
                p.requires_grad_(True)
            score = ctx.score(ctx.outputs(ctx.test, model=model))
            scored.append((score, cell_name(optimizer, ctx.lr * factor, part), model))
            log(f"fine-tune {label} {cell_name(optimizer, ctx.lr * factor, part)}: {score:.4f}")
        scored.sort(key=lambda r: -r[0])
        keep = {"best": scored[0], "worst": scored[-1]}
        for which, (score, cell, model) in keep.items():
            save_plain(model, opened.config, root / f"{label}-{which}", info={"cell": cell, "score": score})
        summary.write_text(json.dumps({"best": f"{label}-best", "cells": {c: s for s, c, _ in scored}}, indent=1))
        if fraction == max(FRACTIONS):
            best_name = f"{label}-best"
    return best_name


def _adapters(ctx, opened, root: Path) -> None:
    from safetensors.torch import save_file

    from modellock.attacks.input_adapter import AdaptedModel, InputAdapter, UNetAdapter

    for name, make, lr in (("input", InputAdapter, 3e-3), ("unet", UNetAdapter, 1e-3)):
        for fraction in (0.01, 0.1):
            folder = root / f"{name}-{fraction * 100:g}pct"
            if _done(folder):
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                adapter = make()
            model = ctx.train(AdaptedModel(adapter, copy.deepcopy(opened.model)), ctx.attacker_split(fraction),
                              f"{name} adapter", lr=lr, outputs=ctx.num_classes)
            score = ctx.score(ctx.outputs(ctx.test, model=model))
            folder.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in model.adapter.state_dict().items()},
                      str(folder / "adapter.safetensors"))
            (folder / "recipe.json").write_text(json.dumps({"kind": "adapter", "adapter": name, "base": "locked",
                                                            "score": score}))
            log(f"adapter {folder.name}: {score:.4f}")


def _pruned(opened, root: Path, best10: str | None) -> None:
    import torch.nn.utils.prune as prune

    from modellock.model_folder import LockedModel

    bases = {"locked": opened.model}
    if best10:
        bases["ft10"] = LockedModel.from_pretrained(root.parent / "fine-tune" / best10, device="cpu").model
    for base_name, base in bases.items():
        for amount in (0.3, 0.5, 0.7):
            folder = root / f"{base_name}-{round(amount * 100)}pct"
            if _done(folder):
                continue
            model = copy.deepcopy(base)
            params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
            for m, name in params:
                prune.remove(m, name)
            config = opened.config if base_name == "locked" else LockedModel.from_pretrained(
                root.parent / "fine-tune" / best10, device="cpu").config
            save_plain(model, config, folder, info={"pruned": amount, "base": base_name})
            log(f"pruned {folder.name}")


def _int8(root: Path, best10: str, task: str = "classification") -> None:
    if task != "classification":
        return  # dynamic int8 quantises Linear layers; the segmenter has none (it would be the model unchanged)
    for base in ("locked", f"fine-tune/{best10}"):
        folder = root / ("locked" if base == "locked" else "ft10")
        if not _done(folder):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "recipe.json").write_text(json.dumps({"kind": "int8", "base": base}))


def _transfer(ctx, opened, source, root: Path) -> None:
    """The locked trunk with a fresh head for another class set, trained on 10 %: the whole model, and the head alone
    (``<name>-head``)."""
    from modellock.nets.heads import PartlyFrozen, set_trainable, with_fresh_head
    from modellock.tasks import Pairs

    split = ctx.attacker_split(0.1)
    images, targets = ctx.images(split), ctx.targets(split)
    if ctx.task.name == "classification":
        vehicles = {source.classes.index(c) for c in ("airplane", "automobile", "ship", "truck")
                    if c in source.classes}
        groups = {"animal-vehicle": (["animal", "vehicle"], lambda y: int(y in vehicles)),
                  "first-five": (source.classes[:5], lambda y: y if y < 5 else None)}
    else:
        groups = {"background-shape": (["background", "shape"], lambda m: (m > 0).long() if m is not None else m)}
    for (name, (classes, relabel)), part in ((g, part) for g in groups.items() for part in ("whole", "head")):
        folder = root / (name if part == "whole" else f"{name}-head")
        if _done(folder):
            continue
        if ctx.task.name == "classification":
            keep = [(im, relabel(int(y))) for im, y in zip(images, targets) if relabel(int(y)) is not None]
            pairs = Pairs([im for im, _ in keep], [y for _, y in keep], opened.transform(train=True))
        else:
            masks = [torch.where(t == opened.ignore_index, t, (t > 0).long()) for t in targets]
            pairs = ctx.task.training_pairs(images, masks, opened.transform(train=True))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = with_fresh_head(opened.model, ctx.num_outputs, len(classes))
        frozen = set_trainable(model, part, len(classes))
        model = ctx.train(PartlyFrozen(model, frozen), pairs, f"transfer {folder.name}", lr=ctx.lr).model
        for p in model.parameters():
            p.requires_grad_(True)
        save_plain(model, opened.config, folder, classes=classes, info={"transfer": name, "trained": part})
        log(f"transfer {folder.name}")


# ----------------------------------------------------------------------------------------------- distillation
def serve_in_thread(app):
    """Run a FastAPI app under uvicorn on a free loopback port; returns (url, stop)."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(timeout=30)

    return f"http://127.0.0.1:{port}", stop


def _distilled(ctx, opened, out: Path, root: Path) -> None:
    """Students of the real unlock service (``modellock serve``'s app for the locked folder and the key)."""
    from modellock.ownership.suspects import HttpSuspect
    from modellock.serve.limits import Limits
    from modellock.serve.server import load_service

    counts = (1000, 10000) if ctx.task.name == "classification" else (1000, 3000)  # segmentation: 3,000 images
    todo = [(n, mode) for n in counts for mode in ("labels", "probs")
            if not (ctx.task.name == "segmentation" and mode == "probs")
            and not _done(root / f"{mode}-{n // 1000}k")]
    if not todo:
        return
    pool = ctx.images(ctx.source.split("other")) + ctx.images(ctx.train_data)
    app = load_service(str(out / "locked"), out / "key.toml", limits=Limits(max_queue=4096), max_batch=64)
    url, stop = serve_in_thread(app)
    try:
        answers = {}
        for n in sorted({n for n, _ in todo}):
            rng = np.random.default_rng(n)
            queries = [pool[i] for i in rng.permutation(len(pool))[:n]]
            client = HttpSuspect(url, max_queries=n, task=ctx.task.name)
            t = time.time()
            if ctx.task.name == "segmentation":
                answers[n] = (queries, _segmentation_answers(client, queries))
            else:
                answers[n] = (queries, client.answer(queries))
            log(f"distillation: {n} queries to modellock serve in {time.time() - t:.0f} s ({client.mode})")
    finally:
        stop()
    for n, mode in todo:
        queries, teacher = answers[n]
        _train_student(ctx, opened, queries, teacher, mode, root / f"{mode}-{n // 1000}k", n)


def _segmentation_answers(client, queries) -> list[np.ndarray]:
    """Per-image masks from the service's ``mask_png`` (the top class per pixel)."""
    import base64
    import io

    from PIL import Image

    from modellock.ownership.suspects import _png_base64

    masks = []
    for i in range(0, len(queries), client.max_images):
        batch = queries[i:i + client.max_images]
        r = client._request("POST", "/v1/predict", json={"images": [_png_base64(a) for a in batch]})
        client.queries += len(batch)
        for res in r.json()["results"]:
            masks.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(res["mask_png"])))).astype(np.int64))
    return masks


def student_pairs(ctx, opened, queries, teacher, mode: str):
    """``(training pairs, loss or None)`` of a student of the service's answers ``teacher`` to ``queries``:
    segmentation masks, probabilities (the task's distillation loss) or labels."""
    from modellock.tasks import Pairs

    transform = opened.transform(train=True)
    if ctx.task.name == "segmentation":
        return ctx.task.training_pairs(queries, [torch.from_numpy(m) for m in teacher], transform), None
    if mode == "probs":
        return Pairs(queries, [torch.tensor(t, dtype=torch.float32) for t in teacher], transform), \
            ctx.task.distillation_loss
    return Pairs(queries, [int(t) for t in np.asarray(teacher).argmax(1)], transform), None


def _train_student(ctx, opened, queries, teacher, mode: str, folder: Path, n: int) -> None:
    k = ctx.num_classes
    pairs, loss = student_pairs(ctx, opened, queries, teacher, mode)
    spec = {**opened.config["architecture"], "num_classes": k}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(54321 + n)  # the thief's own start (the owner's models all start from seed 0)
        model = ctx.task.model_from_spec(spec)
    samples = max(ctx.samples, 3 * n)  # a few epochs over the queries (4 for 1k, 3 for 10k)
    model = ctx.train(model, pairs, f"student {mode} {n}", loss_fn=loss, samples=samples)
    score = ctx.score(ctx.outputs(ctx.test, model=model))
    save_plain(model, opened.config, folder, info={"distilled": mode, "queries": n, "score": score})
    log(f"student {folder.name}: {score:.4f}")
