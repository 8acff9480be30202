"""Sealed weights: authenticated ciphertext under a key derived from the key file; nothing loads without the key.

Each finding of issue 17 about the first seal (a key-seeded noise mask) is an attack here, run against what a
folder stores: it won on the first scheme and finds nothing to work on now.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, load_file, save

from modellock.data import open_source
from modellock.data.synthetic import make_shapes_dataset
from modellock.errors import ModelLockError, WrongKeyError
from modellock.keys import Key
from modellock.lock import lock_model
from modellock.lock.lock_set import LockRecipe
from modellock.model_folder import LockedModel
from modellock.keys.seal import MAGIC, SealError, Sealer
from modellock.testing import build_tiny_locked_model
from modellock.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

KEY = Key.create("keyed-filter", "a quiet marmalade haze")


@pytest.fixture(scope="module")
def locks(tmp_path_factory):
    """The same small lock trained twice with one key, stored plain and sealed."""
    tmp = tmp_path_factory.mktemp("seal")
    source = open_source(make_shapes_dataset(tmp / "shapes", 300, 80))
    train = TrainConfig(epochs=3, batch_size=64, lr=3e-3, warmup_epochs=0.5, num_workers=0)
    plain = lock_model(KEY, source, "small-cnn", tmp / "plain", LockRecipe(seal=False), train, progress=False)
    sealed = lock_model(KEY, source, "small-cnn", tmp / "sealed", LockRecipe(), train, progress=False)
    return source, plain, sealed, tmp


def _stored_tensors(folder: Path) -> dict:
    """What a thief parses out of a folder's weights file: safetensors tensors, or nothing."""
    for name in ("model.safetensors", "model.sealed"):
        try:
            return load_file(str(folder / name))
        except Exception:  # noqa: BLE001 - not a file, or not safetensors
            pass
    return {}


def _weights_file(folder: Path) -> Path:
    return next(p for p in (folder / "model.sealed", folder / "model.safetensors") if p.is_file())


def _state(locked: LockedModel) -> dict:
    return {k: v.detach().cpu() for k, v in locked.model.state_dict().items()}


def _rewrite(folder: Path, data: bytes | None = None, **config_changes) -> None:
    """A tamperer's edit that keeps the folder self-consistent: new weights bytes and config fields, and the
    weights_sha256 of config.json updated to match (so only the seal itself can notice)."""
    weights = _weights_file(folder)
    if data is not None:
        weights.write_bytes(data)
    config = json.loads((folder / "config.json").read_text())
    config.update(config_changes)
    config["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / "config.json").write_text(json.dumps(config))


def _cli(*args) -> int:
    from modellock.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    return e.value.code


# ------------------------------------------------------------------------------------------- the primitive
def test_sealer_round_trip_and_every_change_refused():
    data = bytes(range(256)) * 9000  # > 2 chunks of 1 MiB
    blob = Sealer(KEY).seal(data, b"context")
    assert Sealer(KEY).open(blob, b"context") == data
    assert Sealer(KEY).seal(data, b"context") != blob  # a fresh salt and nonce per sealer and write
    wrong = [(KEY.replace(seed=KEY.seed + 1), b"context", blob), (KEY, b"other context", blob)]
    for i in (30, len(blob) // 2, len(blob) - 1):  # header, a chunk, the last tag
        changed = bytearray(blob)
        changed[i] ^= 0x01
        wrong.append((KEY, b"context", bytes(changed)))
    wrong += [(KEY, b"context", blob[:-1]), (KEY, b"context", blob + b"\0")]
    for key, context, b in wrong:
        with pytest.raises(SealError) as e:
            Sealer(key).open(b, context)
        assert len(str(e.value).splitlines()) == 1


def test_crafted_scrypt_parameters_are_refused_before_any_work(locks, tmp_path, monkeypatch, capsys):
    """A config.json or sealed header asking scrypt for p = 2^30 (hours of work) is refused with one line, and
    scrypt is never called with it."""
    source, plain, sealed, tmp = locks
    calls = []
    real = hashlib.scrypt
    monkeypatch.setattr(hashlib, "scrypt", lambda *a, **k: calls.append(k) or real(*a, **k))
    folder = tmp_path / "crafted"
    shutil.copytree(tmp / "sealed", folder)
    config = json.loads((folder / "config.json").read_text())
    fp = config["lock"]["fingerprint"].split("$")
    fp[3] = str(2**30)
    _rewrite(folder, lock={**config["lock"], "fingerprint": "$".join(fp)})
    with pytest.raises(ModelLockError, match=r"field 'lock.fingerprint': scrypt p=1073741824 out of bounds"):
        LockedModel.from_pretrained(folder)
    with pytest.raises(ModelLockError, match="p=1073741824 out of bounds"):
        KEY.matches("$".join(fp))
    KEY.save(tmp_path / "k.toml")
    assert _cli("predict", "--model", folder, "--key", tmp_path / "k.toml", tmp_path / "none.png") == 2
    err = capsys.readouterr().err
    assert "p=1073741824 out of bounds" in err and len(err.strip().splitlines()) == 1
    # the sealed file's own header, crafted the same way
    shutil.rmtree(folder)
    shutil.copytree(tmp / "sealed", folder)
    blob = (folder / "model.sealed").read_bytes()
    start = len(MAGIC) + 4
    header = blob[start:start + int.from_bytes(blob[len(MAGIC):start], "big")]
    crafted = header.replace(b'"p": 1,', b'"p": 1073741824,')
    assert crafted != header
    _rewrite(folder, MAGIC + len(crafted).to_bytes(4, "big") + crafted + blob[start + len(header):])
    with pytest.raises(ModelLockError, match="header field 'kdf': scrypt p=1073741824 out of bounds"):
        LockedModel.from_pretrained(folder).open(KEY)
    assert calls and all(c["p"] <= 16 for c in calls)


# ------------------------------------------------------------------------------------------- a sealed lock
def test_sealed_folder_is_ciphertext_and_opens_only_with_its_key(locks):
    source, plain, sealed, tmp = locks
    folder = tmp / "sealed"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.sealed"]
    data = (folder / "model.sealed").read_bytes()
    assert len(zlib.compress(data, 9)) >= 0.99 * len(data)  # ciphertext: it does not compress
    assert _stored_tensors(folder) == {}  # not a safetensors file: no tensor to read
    config = json.loads((folder / "config.json").read_text())
    assert config["lock"]["seal"]["scheme"] == "aes-256-gcm+scrypt/2" and KEY.prompt not in json.dumps(config)
    assert sealed.opened and not sealed.is_sealed  # what lock_model returns: the opened weights
    # sealing is lossless: the opened weights are those of the same lock stored plain, bit for bit
    reloaded = LockedModel.from_pretrained(folder, device="cpu")
    assert reloaded.is_sealed and reloaded.classes == source.classes
    opened = reloaded.open(KEY)
    assert opened.opened and reloaded.open(KEY) is opened and reloaded.with_key(KEY) is opened
    a, b = _state(opened), _state(plain)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    images = [source.split("test").load(s) for s in source.split("test").samples[:8]]
    assert torch.equal(reloaded.unlock(KEY).logits(images), plain.unlock(KEY).logits(images))
    assert LockedModel.from_pretrained(folder, device="cpu", key=KEY).opened
    for wrong in (KEY.replace(seed=KEY.seed + 1), KEY.replace(prompt="a quiet marmalade haze!")):
        for attempt in (reloaded.open, reloaded.unlock, reloaded.predictor):
            with pytest.raises(WrongKeyError, match="^the key does not open this model$"):
                attempt(wrong)


def test_a_thief_with_the_folder_alone_gets_nothing(locks):
    """No key, no network: every way into the weights (the model, a predictor, an attack) stops at the seal."""
    from modellock.attacks.context import AttackContext, Budget, Machinery

    source, plain, sealed, tmp = locks
    stolen = LockedModel.from_pretrained(tmp / "sealed", device="cpu")
    images = [source.split("test").load(source.split("test").samples[0])]
    for use in (lambda: stolen.model, lambda: stolen.predictor().predict(images),
                lambda: stolen.with_key(None).model.state_dict()):
        with pytest.raises(ModelLockError, match="the weights are sealed; they need the key"):
            use()
    budget = Budget("test", 200, ("adamw",), {"adamw": (1.0,)}, ("whole",), (50,))
    with pytest.raises(ModelLockError, match="needs the opened weights"):  # no attack even starts on the folder
        AttackContext(stolen, source, Machinery.of(KEY.replace(prompt="a guess")), budget=budget, fractions=(1.0,),
                      progress=False)
    opened = AttackContext(sealed, source, Machinery.of(KEY.replace(prompt="a guess")), budget=budget,
                           fractions=(1.0,), progress=False)  # the opened weights (what lock_model returns) do
    assert opened.model.opened


def test_wrong_key_and_tampered_file_are_one_line_on_the_command_line(locks, tmp_path, capsys):
    source, plain, sealed, tmp = locks
    image = source.split("test").samples[0]
    path = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(source.split("test").load(image)).save(path)
    KEY.save(tmp_path / "k.toml")
    KEY.replace(seed=KEY.seed + 1).save(tmp_path / "wrong.toml")
    folder = tmp_path / "m"
    shutil.copytree(tmp / "sealed", folder)
    from modellock.cli import main

    main(["predict", "--model", str(folder), "--key", str(tmp_path / "k.toml"), str(path)])  # opens
    capsys.readouterr()

    def one_line_error(expected: str) -> None:
        code = _cli("predict", "--model", folder, "--key", tmp_path / "k.toml", path)
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert expected in err, err

    code = _cli("predict", "--model", folder, "--key", tmp_path / "wrong.toml", path)
    assert code == 2 and capsys.readouterr().err == "error: the key does not open this model\n"
    code = _cli("predict", "--model", folder, path)  # no key at all
    err = capsys.readouterr().err
    assert code == 2 and "the weights are sealed" in err and len(err.strip().splitlines()) == 1
    original = (folder / "model.sealed").read_bytes()
    for i in (40, len(original) // 2, len(original) - 3):  # a byte of the header, of a chunk, of the last tag
        changed = bytearray(original)
        changed[i] ^= 0x80
        _rewrite(folder, bytes(changed))
        one_line_error("model.sealed: ")
    changed = bytearray(original)
    changed[100] ^= 0x80
    (folder / "model.sealed").write_bytes(bytes(changed))  # config.json not updated: its hash notices first
    one_line_error("sha256 does not match config.json")
    config = json.loads((tmp / "sealed" / "config.json").read_text())
    _rewrite(folder, original, classes=config["classes"][::-1])  # a config swapped under the same weights
    one_line_error("model.sealed: does not open")


def test_models_sealed_by_the_first_scheme_are_refused(locks, tmp_path):
    source, plain, sealed, tmp = locks
    folder = tmp_path / "old"
    shutil.copytree(tmp / "plain", folder)
    config = json.loads((folder / "config.json").read_text())
    config["lock"]["seal"] = {"scheme": "keyed-gaussian/v1", "scales": {"head.weight": 0.4}}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLockError, match="old scheme 'keyed-gaussian/v1'.*lock the model again") as e:
        LockedModel.from_pretrained(folder)
    assert len(str(e.value).splitlines()) == 1


# ------------------------------------------------------------------------------------------- issue 17's attacks
def _old_seal(state: dict, key) -> tuple[dict, dict, dict]:
    """The first scheme (keyed-gaussian/v1), rebuilt to show its attack: every weight plus 4x its RMS of
    normal noise from ``torch.Generator().manual_seed(s)``, ``s`` 63 bits from the key and the tensor's name."""
    secret = hashlib.scrypt(key.canonical(), salt=b"modellock/seal/v1", n=2**14, r=8, p=1, dklen=32)
    out, scales, seeds = dict(state), {}, {}
    for name, t in state.items():
        if t.is_floating_point() and not name.endswith(("running_mean", "running_var")):
            seeds[name] = int.from_bytes(hashlib.sha256(secret + name.encode()).digest()[:8], "little") & (2**63 - 1)
            scales[name] = 4.0 * max(float(t.double().pow(2).mean().sqrt()), 1e-2)
            noise = torch.randn(t.shape, generator=torch.Generator().manual_seed(seeds[name]), dtype=torch.float64)
            out[name] = (t.double() + scales[name] * noise).to(t.dtype)
    return out, scales, seeds


def _seed_oracle(stored: dict, scales: dict, candidates) -> dict:
    """Issue 17's 32-bit seed oracle: per masked tensor, the candidate seed whose mask leaves a residual of RMS
    at most scale / 4 (the mask was 4x the tensor's RMS; a wrong seed leaves more than the scale); that residual
    is the weight itself."""
    found = {}
    for name, scale in scales.items():
        if name not in stored or not stored[name].is_floating_point():
            continue
        t = stored[name].double()
        for s in candidates(name):
            w = t - scale * torch.randn(t.shape, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
            if float(w.pow(2).mean().sqrt()) <= scale / 4 * (1 + 1e-4):
                found[name] = w.float()
                break
    return found


def test_the_32_bit_seed_oracle_finds_nothing_to_test(locks):
    """The torch generator keeps 32 bits of a seed, so the first scheme's masks fell to a 2^32 sweep tested by
    the residual's RMS. On that scheme (rebuilt here, swept over 64 candidates around the right low 32 bits
    instead of all 2^32) the oracle recovers every weight; a sealed folder gives it no tensor to test."""
    source, plain, sealed, tmp = locks
    s = 2**40 + 12345
    draw = (lambda seed: torch.randn(5, generator=torch.Generator().manual_seed(seed)))
    assert torch.equal(draw(s), draw(s & 0xFFFFFFFF))  # the root cause: only the low 32 bits count
    state = _state(plain)
    old, scales, seeds = _old_seal(state, KEY)
    window = (lambda name: [(seeds[name] & 0xFFFFFFFF) + d for d in range(-32, 32)])
    found = _seed_oracle(old, scales, window)
    assert found.keys() == scales.keys() and all(torch.allclose(found[n], state[n], atol=1e-5) for n in found)
    # the sealed folder: no tensor, no scale; whatever the sweep, nothing to test
    config = json.loads((tmp / "sealed" / "config.json").read_text())
    stored = _stored_tensors(tmp / "sealed")
    assert stored == {} and "scales" not in config["lock"]["seal"]
    assert _seed_oracle(stored, config["lock"]["seal"].get("scales") or scales, window) == {}


def test_one_key_two_models_reveal_nothing_about_each_other(tmp_path):
    """The first scheme masked every model of a key with the same noise (scaled per tensor, the scales in
    config.json): one leaked plain model gave the noise, and so opened every other model of the key. Now each
    write has its own salt and nonce: a leaked plain model + its sealed file says nothing about the other, and
    the two sealed files have nothing in common."""
    a = build_tiny_locked_model(tmp_path / "a", KEY, seed=0, seal=True)
    b = build_tiny_locked_model(tmp_path / "b", KEY, seed=1, seal=True)
    plain_a, plain_b = _state(a), _state(b)
    # the attack on the first scheme, rebuilt: it wins there
    (old_a, scales_a, _), (old_b, scales_b, _) = _old_seal(plain_a, KEY), _old_seal(plain_b, KEY)
    noise = {n: (old_a[n].double() - plain_a[n].double()) / scales_a[n] for n in scales_a}
    assert all(torch.allclose((old_b[n].double() - scales_b[n] * noise[n]).float(), plain_b[n], atol=1e-5)
               for n in scales_b)
    # the same attack on what the folders store
    stored_a, stored_b = _stored_tensors(tmp_path / "a"), _stored_tensors(tmp_path / "b")
    assert stored_a == {} and stored_b == {}
    # a leaked plain model + its sealed file as a keystream (what reusing a stream cipher's nonce would give)
    file_a, file_b = (tmp_path / "a" / "model.sealed").read_bytes(), (tmp_path / "b" / "model.sealed").read_bytes()
    bytes_a, bytes_b = save(plain_a, metadata={"format": "pt"}), save(plain_b, metadata={"format": "pt"})
    offset = len(file_a) - len(bytes_a) - 16  # where the first chunk's ciphertext starts (one chunk, one tag)
    stream = bytes(x ^ y for x, y in zip(file_a[offset:], bytes_a))
    guess_b = bytes(x ^ y for x, y in zip(file_b[offset:], stream))
    with pytest.raises(Exception):  # noqa: B017 - safetensors raises its own error type
        load(guess_b)
    same = sum(x == y for x, y in zip(guess_b, bytes_b)) / len(bytes_b)
    assert same < 0.02, same  # ~1/256 by chance: the other model's bytes do not come out
    # nor does a difference show: the two files agree on nothing but their magic, as random bytes would
    body = min(len(file_a), len(file_b)) - 200
    assert sum(x == y for x, y in zip(file_a[-body:], file_b[-body:])) / body < 0.02


@pytest.mark.slow
def test_the_seal_keeps_from_a_folder_thief_what_an_adapter_takes_from_opened_weights(tmp_path):
    """A defence on the easy case of tests/test_attacks.py (keyed-filter at full strength, a plain locked class):
    on the opened weights the input adapter undoes the lock; from the sealed folder alone it cannot start."""
    from modellock.attacks import run_attack
    from modellock.attacks.context import AttackContext, Budget, Machinery
    from modellock.evaluation.matrix import evaluate

    source = open_source(make_shapes_dataset(tmp_path / "shapes", 700, 240))
    key = Key.create("keyed-filter", "with a quiet marmalade haze", params={"strength": 1.0})
    train = TrainConfig(epochs=10, batch_size=64, lr=3e-3, warmup_epochs=0.5, num_workers=0)
    torch.manual_seed(0)
    opened = lock_model(key, source, "small-cnn", tmp_path / "m", LockRecipe(clean_target="locked-class"), train,
                        progress=False)
    budget = Budget("test", 4000, ("adamw",), {"adamw": (1.0,)}, ("whole",), (400,))
    result = evaluate(opened, key, source, progress=False, handling=False)
    ctx = AttackContext(opened, source, Machinery.of(key), budget=budget, fractions=(1.0,), progress=False)
    assert run_attack("input-adapter", ctx)["best"] >= result["unlocked"] - 0.1  # the attack, where it wins
    stolen = LockedModel.from_pretrained(tmp_path / "m", device="cpu")  # the folder alone: sealed weights
    with pytest.raises(ModelLockError, match="needs the opened weights"):
        AttackContext(stolen, source, Machinery.of(key), budget=budget, fractions=(1.0,), progress=False)
    assert not stolen.opened and stolen.is_sealed


def test_nothing_in_the_folder_names_or_narrows_the_key(locks, tmp_path):
    """Issue 17: the stored evaluation named the pool prompts tried as wrong keys ("not the key": a pool key's
    candidates narrowed); attack summaries could name a guessed prompt. The model folder keeps neutral labels
    and figures only; the evaluation returned to the caller keeps its names."""
    from modellock.attacks import available_attacks
    from modellock.evaluation.matrix import evaluate
    from modellock.keys.prompts import STYLE_PROMPTS

    source, plain, sealed, tmp = locks
    folder = tmp_path / "m"
    shutil.copytree(tmp / "sealed", folder)
    opened = LockedModel.from_pretrained(folder, device="cpu", key=KEY)
    result = evaluate(opened, KEY, source, progress=False, handling=False)
    assert any("prompt '" in name for name in result["wrong_keys"])  # what the caller sees
    opened.save_evaluation(result)
    opened.save_attack_summary(
        {"worst_case_undone": 0.42, "worst_case_attack": "guessed-prompts", "worst_case_setting": "as a linocut",
         "fine_tune_gain": 0.1, "line": "worst case: guessed-prompts (as a linocut) undoes 42% of the lock"},
        {"budget": "quick", "fractions": [0.05], "prompts": ["as a linocut", STYLE_PROMPTS[0]], "lr": 0.001,
         "diffusion_model": "someone/private-model"}, available_attacks())
    stored = json.loads((folder / "config.json").read_text())
    assert set(stored["evaluation"]["wrong_keys"]) == {"wrong key 1", "wrong key 2", "wrong key 3"}
    assert stored["attack_summary"]["worst_case_undone"] == 0.42
    assert stored["attack_summary"]["settings"] == {"budget": "quick", "fractions": [0.05], "lr": 0.001}
    text = "".join(p.read_text(errors="replace") for p in folder.iterdir() if p.suffix in (".json", ".md"))
    assert "wrong key 1" in text and "guessed-prompts" in text
    for prompt in [*STYLE_PROMPTS, KEY.prompt, "as a linocut", "someone/private-model", "next seed"]:
        assert prompt not in text, prompt
    assert LockedModel.from_pretrained(folder, device="cpu").open(KEY)  # the config fields it binds are intact
