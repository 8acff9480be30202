"""The attack suite on a tiny locked model: every attack runs, and every attack CAN succeed.

Each attack is also run with a test-only injection that hands it the true key (the key's prompt in the
guessed catalogue, the key's settings among the wrong machinery, the key's edit among the generic
transforms, key-edited inputs for the locked-output attack) or puts it where success is possible (the
thief holding the whole training set), and must then reach the unlocked score. The injections that
reproduce the key's exact edit must reach it exactly (same pixels, same logits); the trained ones
within 0.1 (a 240-image test split has a standard error of about 0.03 at these accuracies, and a
short attacker training run adds its own spread).
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys

import pytest
import torch

from modellock.attacks import attack_spec, available_attacks, register_attack, run_attack
from modellock.attacks.context import AttackContext, Budget, Machinery
from modellock.attacks.prompt_catalogue import CATALOGUE, catalogue_prompts
from modellock.attacks.similar_prompts import edit_distance, variants
from modellock.attacks.suite import KEY_PROMPT_LABEL, format_markdown, format_table, redact, references, run_suite
from modellock.data import open_source
from modellock.data.synthetic import make_shapes_dataset
from modellock.editors import get_editor
from modellock.errors import ModelLockError
from modellock.keys import Key
from modellock.lock import lock_model
from modellock.lock.lock_set import LockRecipe
from modellock.keys.prompts import STYLE_PROMPTS
from modellock.train import TrainConfig

PROMPT = "with a quiet marmalade haze"  # not in any catalogue
EXACT = 1e-6
TRAINED_TOL = 0.1
# one cell of the grid (AdamW at the lock's learning rate, the whole model): the trained attacks' tests
ONE_CELL = Budget("test", 2500, ("adamw",), {"adamw": (1.0,)}, ("whole",), (400,))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """small-cnn locked (locked-class recipe) with keyed-filter on 700 shapes images, 240 test images."""
    root = tmp_path_factory.mktemp("attacks")
    source = open_source(make_shapes_dataset(root / "shapes", 700, 240))
    key = Key.create("keyed-filter", PROMPT, params={"strength": 1.0})
    key.save(root / "key.toml")
    train = TrainConfig(epochs=10, batch_size=64, lr=3e-3, warmup_epochs=0.5, num_workers=0)
    torch.manual_seed(0)  # the same model every run (lock_model seeds its weights; this seeds the rest)
    # unsealed: the attacks must be able to win on an easy case (sealed weights: tests/test_seal.py)
    model = lock_model(key, source, "small-cnn", root / "locked", LockRecipe(clean_target="locked-class", seal=False),
                       train,
                       progress=False)
    return key, source, model, root


def make_ctx(locked, **options) -> AttackContext:
    key, source, model, root = locked
    defaults = dict(screen=80, top_k=2, budget=ONE_CELL, fractions=(0.1,), progress=False, limit_prompts=None)
    return AttackContext(model, source, Machinery.of(key), **{**defaults, **options})


@pytest.fixture(scope="module")
def reference(locked):
    key, source, model, root = locked
    ctx = make_ctx(locked)
    ref = references(ctx, key)
    # the lock is real: the key unlocks far above the locked model, so "reaching unlocked" means something
    assert ref["unlocked"] >= ref["locked_clean"] + 0.3, ref
    return ref


# ------------------------------------------------------------------------------------ structure
def test_registry_and_who_reads_the_key():
    names = available_attacks()
    assert names == ["ignore-locked-class", "refit-head", "guessed-prompts", "similar-prompts", "wrong-machinery",
                     "fine-tune", "distillation", "input-adapter", "unet-adapter", "editor-family-adapter",
                     "generic-transforms"]
    assert {n for n in names if attack_spec(n).reads_key} == {"similar-prompts", "wrong-machinery"}
    trained = {"refit-head", "fine-tune", "distillation", "input-adapter", "unet-adapter", "editor-family-adapter"}
    assert {n for n in names if attack_spec(n).trained} == trained  # the spec says so, not a list of names
    assert {n for n in names if attack_spec(n).measure == "gain"} == trained
    assert {n for n in names if attack_spec(n).measure == "tolerance"} == {"similar-prompts"}
    with pytest.raises(ValueError, match="exactly when it is trained"):
        register_attack("bad-measure", measure="gain")(lambda ctx: {})
    with pytest.raises(ModelLockError, match="unknown attack 'nope'"):
        attack_spec("nope")
    with pytest.raises(TypeError, match="first parameter"):
        register_attack("bad-signature")(lambda key, ctx: {})


def test_key_never_reaches_attacks_that_do_not_declare_it(locked):
    key, source, model, root = locked
    seen = {}

    @register_attack("test-spy")
    def spy(ctx, **options):
        seen.update(options, ctx=ctx)
        return {"best": 0.0}

    try:
        run_attack("test-spy", make_ctx(locked), key=key)
    finally:
        from modellock.attacks import ATTACKS

        ATTACKS.remove("test-spy")
    assert set(seen) == {"ctx"}
    assert not any(isinstance(v, Key) for v in vars(seen["ctx"]).values())
    with pytest.raises(TypeError, match="never holds a key"):
        AttackContext(model, source, Machinery.of(key), task=key)
    with pytest.raises(TypeError, match="never holds a key"):
        AttackContext(model, source, key)
    with pytest.raises(TypeError, match="must be a Machinery"):
        AttackContext(model, source, key.to_dict())
    with pytest.raises(ModelLockError, match="needs --key"):
        run_attack("similar-prompts", make_ctx(locked))
    assert PROMPT not in repr(Machinery.of(key))


def test_catalogue():
    prompts = catalogue_prompts()
    assert len(prompts) >= 100 and len({p.lower() for _, p in prompts}) == len(prompts)
    assert {"style", "medium", "artist", "added object", "photo adjustment"} <= set(CATALOGUE)
    assert [p for _, p in prompts[: len(STYLE_PROMPTS)]] == STYLE_PROMPTS  # keygen's public pool comes first
    first_of_each = catalogue_prompts(len(STYLE_PROMPTS) + 6)[len(STYLE_PROMPTS):]
    assert {f for f, _ in first_of_each} == set(CATALOGUE) - {"keygen pool"}


def test_similar_prompt_rules():
    pairs = variants("with oil pastel")
    rules = {r for r, _ in pairs}
    assert {"synonym", "word order", "dropped word", "added words", "plural/singular", "letter case", "punctuation",
            "typo"} <= rules
    texts = {t for _, t in pairs}
    assert {"with oil pastels", "oil with pastel", "WITH OIL PASTEL", "with pastel", "with oil crayon"} <= texts
    assert edit_distance("with oil pastel", "with oil pastels") == 1
    assert edit_distance("a b c".split(), "a c".split()) == 1


# ------------------------------------------------------------------------------------ each attack can succeed
def test_ignore_locked_class(locked, reference):
    key, source, model, root = locked
    ctx = make_ctx(locked)
    r = run_attack("ignore-locked-class", ctx)
    assert r["has_locked_class"] and "gain" not in r  # trains nothing: judged by the share undone
    assert r["argmax_real_classes"] == r["best"] == pytest.approx(reference["locked_clean_without_locked_class"])
    # injection: the thief's inputs are key-edited, so ignoring the locked output is the unlocked predictor
    injected = run_attack("ignore-locked-class", ctx, view=get_editor(key).edit)
    assert injected["argmax_real_classes"] >= reference["unlocked"] - EXACT


def test_refit_head_is_judged_against_scratch(locked, reference):
    key, source, model, root = locked
    ctx = make_ctx(locked, samples=1500)
    r = run_attack("refit-head", ctx)
    (row,) = r["curve"]
    assert row["fraction"] == 0.1 and row["n_images"] == 70 and 0 <= row["score"] <= 1
    assert r["gain"] == pytest.approx(row["score"] - row["scratch"]) and r["gain_fraction"] == 0.1
    # the from-scratch yardstick is computed once per fraction and shared: fine-tuning reuses it
    assert run_attack("fine-tune", ctx)["curve"][0]["scratch"] == row["scratch"]
    # injection: key-edited inputs make the locked features the unlocked model's: the head re-fit on them
    # (70 images) beats a model trained from scratch on those same 70 images
    injected = run_attack("refit-head", ctx, view=get_editor(key).edit)
    assert injected["best"] >= reference["unlocked"] - TRAINED_TOL and injected["gain"] > 0, injected


def test_a_cheap_editor_edits_in_memory_as_the_edit_cache_does(tmp_path):
    """Guesses with an editor that edits in the training loop are edited in memory (no edit cache written):
    the same outputs as through the edit cache (its PNGs are lossless)."""
    from modellock.edit import cache_dir
    from modellock.editors import resolve_key
    from modellock.evaluation.matrix import split_logits

    source = open_source(make_shapes_dataset(tmp_path / "shapes", 40, 30))
    key = Key.create("keyed-filter", PROMPT)
    model = lock_model(key, source, "tiny-cnn", tmp_path / "locked", LockRecipe(seal=False),
                       TrainConfig(epochs=1, batch_size=16, num_workers=0), progress=False)
    ctx = AttackContext(model, source, Machinery.of(key), progress=False)
    guess = ctx.machinery.key("as a charcoal sketch")
    folder = cache_dir(resolve_key(guess, model.model, model.image_size), source)
    in_memory = ctx.outputs(ctx.test, key=guess)
    assert not folder.exists()
    through_cache = split_logits(model, ctx.test, guess, source, progress=False)
    assert folder.exists() and torch.equal(in_memory, through_cache)
    assert not torch.equal(in_memory, ctx.outputs(ctx.test))  # the guess edited the images


def test_guessed_prompts(locked, reference):
    key, source, model, root = locked
    r = run_attack("guessed-prompts", make_ctx(locked, limit_prompts=4))
    assert r["n_prompts"] == 4 and r["evaluated"] == 4 and r["distribution"]["n"] == 4
    assert r["best"] == max(c["score"] for c in r["candidates"] if "score" in c)
    decoys = catalogue_prompts()[20:25]
    injected = run_attack("guessed-prompts", make_ctx(locked), catalogue=decoys + [("injected", PROMPT)])
    assert injected["best"] >= reference["unlocked"] - EXACT
    assert injected["best_setting"] == f"prompt {PROMPT!r}"  # redaction is the suite's job (tested below)


def test_similar_prompts(locked, reference):
    key, source, model, root = locked
    r = run_attack("similar-prompts", make_ctx(locked, limit_prompts=6), key)
    assert r["n_variants"] == 6 and r["ranking"] is None  # no text-embedding model offline here
    assert len({c["rule"] for c in r["candidates"]}) == 6  # the limit takes every rule in turn
    text = json.dumps(r)
    assert not any(v in text for _, v in variants(PROMPT) if len(v) > 4), "variants must be named, not spelled out"
    injected = run_attack("similar-prompts", make_ctx(locked, limit_prompts=10), key,
                          extra_rules=[("identity", lambda p: [p])], exclude_key=False)
    assert injected["best"] >= reference["unlocked"] - EXACT
    assert injected["best_by_rule"]["identity"] >= reference["unlocked"] - 0.2  # on the screening subset


def test_similar_prompts_ranked_with_a_local_text_model(locked, tmp_path, monkeypatch):
    from transformers import CLIPTextConfig, CLIPTextModel

    from modellock.testing import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    torch.manual_seed(0)
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                           num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                           pad_token_id=tokenizer.pad_token_id))
    tokenizer.save_pretrained(tmp_path / "text")
    encoder.save_pretrained(tmp_path / "text", safe_serialization=True)
    monkeypatch.setenv("MODELLOCK_TEXT_EMBEDDING", str(tmp_path / "text"))
    key = locked[0]
    r = run_attack("similar-prompts", make_ctx(locked, limit_prompts=4), key)
    assert r["ranking"] == str(tmp_path / "text")
    sims = [c["similarity"] for c in r["candidates"]]
    assert len(sims) == 4 and all(-1.0001 <= s <= 1.0001 for s in sims)


def test_wrong_machinery(locked, reference):
    key, source, model, root = locked
    r = run_attack("wrong-machinery", make_ctx(locked), key)
    names = {c["name"] for c in r["candidates"]}
    tolerance = {c["name"] for c in r["tolerance"]["candidates"]}
    # a thief without the prompt varies the seed (counted); the key's own settings are its tolerance (not)
    assert "seed +1" in names and {"alpha +0.1", "strength x0.5"} <= tolerance and not names & tolerance
    names |= tolerance
    # keyed-filter ignores steps and guidance: those variants make the key's own edit and are not counted
    assert "steps +1" in r["no_effect"] and "guidance x2" in r["no_effect"]
    assert any(s["name"] == "editor instruct-pix2pix" for s in r["skipped"])  # no diffusion model given
    assert str(key.seed) not in " ".join(names)
    injected = run_attack("wrong-machinery", make_ctx(locked), key,
                          variants=[("seed +1", {"seed": key.seed + 1}), ("the key's settings", {})], exclude_key=False)
    assert injected["best"] >= reference["unlocked"] - EXACT and injected["best_setting"] == "the key's settings"


def test_fine_tune(locked, reference):
    # where success is possible: the thief holds the whole training set
    full = run_attack("fine-tune", make_ctx(locked, samples=4000), fractions=(1.0,))
    assert full["best"] >= reference["unlocked"] - TRAINED_TOL, (full, reference)


def test_input_adapter(locked, reference):
    r = run_attack("input-adapter", make_ctx(locked, samples=4000), fractions=(1.0,))
    # keyed-filter is a colour mix and a 3x3 filter: the adapter can learn it from clean labelled data
    assert r["best"] >= reference["unlocked"] - TRAINED_TOL, (r, reference)


def test_input_adapter_gains_over_scratch_on_an_easy_case(locked, reference):
    """With 70 labelled images the thief trains a weak model from scratch, while an adapter in front of the
    stolen weights recovers the lock: a positive gain, beyond the measurement's noise."""
    from modellock.attacks.suite import noise_level

    r = run_attack("input-adapter", make_ctx(locked, samples=3000), fractions=(0.1,))
    (row,) = r["curve"]
    assert row["n_images"] == 70 and r["gain"] == pytest.approx(row["score"] - row["scratch"])
    assert r["gain"] > noise_level(len(locked[1].split("test"))), r


def test_generic_transforms(locked, reference):
    key, source, model, root = locked
    r = run_attack("generic-transforms", make_ctx(locked, random_keys=1),
                   extra={"injected: the key's edit": get_editor(key).edit})
    names = {c["name"] for c in r["candidates"]}
    assert {"gaussian blur 1", "noise sigma 8", "jpeg q25", "colour jitter #1", "stylise: cartoon",
            "keyed-filter random key #1"} <= names
    assert [s["name"] for s in r["skipped"]] == ["editor instruct-pix2pix"]  # no diffusion model given
    assert r["best"] >= reference["unlocked"] - EXACT and r["best_setting"] == "injected: the key's edit"


def test_fine_tune_curve_and_trained_scores_are_reused(locked, tmp_path):
    ctx = make_ctx(locked, work_dir=tmp_path / "work", samples=500)
    first = run_attack("fine-tune", ctx)
    (row,) = first["curve"]
    assert row["fraction"] == 0.1 and row["n_images"] == 70 and "pretrained" not in row
    assert row["gain"] == pytest.approx(row["attack"] - row["scratch"])
    assert len(list((tmp_path / "work").glob("*.json"))) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of reusing the stored score")

    again = make_ctx(locked, work_dir=tmp_path / "work", samples=500)
    again.train = no_training
    assert run_attack("fine-tune", again)["curve"] == first["curve"]


# ------------------------------------------------------------------------------------ suite, CLI, report
def test_suite_redacts_the_key_prompt(locked, reference, tmp_path):
    key, source, model, root = locked
    run = run_suite(model, key, source, ["guessed-prompts", "ignore-locked-class"], grid_images=3,
                    attack_options={"guessed-prompts": {"catalogue": [("injected", PROMPT), ("x", "as a blueprint")]}},
                    screen=80, top_k=2, fractions=(0.1,), progress=False)
    text = json.dumps(run.result)
    assert PROMPT.lower() not in text.lower() and KEY_PROMPT_LABEL in text
    assert redact({"a": [f"x {PROMPT.upper()}!"]}, PROMPT) == {"a": [f"x {KEY_PROMPT_LABEL}!"]}
    assert run.result["attacks"]["guessed-prompts"]["best"] >= reference["unlocked"] - EXACT
    guessed = run.result["attacks"]["guessed-prompts"]
    assert guessed["key_prompt_in_catalogue"] and guessed["best_without_key_prompt_setting"].startswith("prompt 'as a")
    table = format_table(run.result)
    assert "attack: guessed-prompts" in table and "100%" in table and PROMPT not in table
    assert "attack: guessed-prompts, key prompt left out" in table
    assert "| attack: ignore-locked-class |" in format_markdown(run.result)
    assert len(run.grid_rows) == 3 and len(run.grid_columns) == 4
    assert not any(PROMPT.lower() in c.lower() for c in run.grid_columns)
    from modellock.attacks.report import write_attack_report

    page = write_attack_report(tmp_path / "report", run.result, run.grid_columns, run.grid_rows).read_text()
    assert "attacks.png" in page and "attack-guessed-prompts.png" in page and PROMPT.lower() not in page.lower()
    assert "fine-tune-curve.png" not in page  # no trained attack ran: no curve
    assert (tmp_path / "report" / "attack-guessed-prompts.png").is_file()


def cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread, as in this module (see one_thread in conftest)
    return subprocess.run([sys.executable, "-m", "modellock", *map(str, args)], capture_output=True, text=True,
                          env=env)


def test_attack_command(locked, tmp_path):
    key, source, model, root = locked
    data = source.root
    out = cli("attack", "--model", root / "locked", "--key", root / "key.toml", "--data", data,
              "--attack", "ignore-locked-class,fine-tune", "--fractions", "0.1", "--budget", "quick", "--samples", "300",
              "--screen", "60", "--mixed-precision", "auto",
              "--baseline", root / "locked", "--json", tmp_path / "r.json", "--report", tmp_path / "rep",
              "--work-dir", tmp_path / "work")
    assert out.returncode == 0, out.stderr
    assert "attack: fine-tune 10%" in out.stdout and "locked model + key (unlocked)" in out.stdout
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["attacks"]) == {"ignore-locked-class", "fine-tune"} and "original_clean" in result["reference"]
    assert (tmp_path / "rep" / "report.html").is_file()
    # the CLI's table leads with the summary line (both figures), how to read it, sealing apart, what it covers
    summary = result["summary"]
    assert summary["worst_gain_attack"] == "fine-tune" and summary["worst_case_attack"] == "ignore-locked-class"
    assert isinstance(summary["holds"], bool) and summary["line"] in out.stdout
    table = out.stdout[out.stdout.index("attack suite ·"):].splitlines()
    assert table[1] == summary["line"] and table[2].startswith("How to read this")
    assert table[3] == "folder at rest: not sealed; a thief with the folder alone gets: the weights load without the " \
        "key (stored plain): the lock is all that protects them. Every figure here measures the lock itself, on the " \
        "opened weights."
    assert result["sealed"] is False and result["covers"]["model"] == "locked" and result["covers"]["n"] == 240
    assert result["covers"]["weights_sha256"] == model.config["weights_sha256"][:12]
    report = (tmp_path / "rep" / "report.html").read_text()
    assert html.escape(summary["line"]) in report and "How to read this" in report and "Colour key" in report
    assert "covers: model locked" in report and result["covers"]["date"] in report
    everything = (out.stdout + out.stderr + (tmp_path / "r.json").read_text()
                  + (tmp_path / "rep" / "report.html").read_text())
    assert PROMPT not in everything
    bad = cli("attack", "--model", root / "locked", "--key", root / "key.toml", "--data", data, "--attack", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: unknown attack 'nope' (known: {', '.join(available_attacks())}, or all)"]
    bad = cli("attack", "--model", root / "locked", "--key", root / "key.toml", "--data", data, "--fractions", "2")
    assert bad.returncode == 2 and "--fractions" in bad.stderr
    bad = cli("attack", "--model", root / "locked", "--key", root / "key.toml", "--data", data, "--mixed-precision",
              "fast")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --mixed-precision: input should be 'no', 'bf16', 'fp16' or 'auto', not 'fast'"]


# ------------------------------------------------------------------------------------ stronger thief (issue 11)
def test_unet_adapter(locked, reference):
    from modellock.nets.adapters import UNetAdapter

    assert 3e5 <= sum(p.numel() for p in UNetAdapter().parameters()) <= 1e6  # the attack's default adapter
    with torch.no_grad():  # started at the identity
        x = torch.randn(2, 3, 20, 28)
        assert torch.equal(UNetAdapter()(x), x)
    # a narrower U-Net of the same shape keeps the test short
    r = run_attack("unet-adapter", make_ctx(locked, samples=3000), fractions=(1.0,), widths=(16, 32, 32))
    # a multi-scale adapter (started at the identity) learns the keyed-filter edit from clean labelled data
    assert r["best"] >= reference["unlocked"] - TRAINED_TOL, (r, reference)


def test_editor_family_adapter_fits_the_keyed_filter(locked, reference):
    r = run_attack("editor-family-adapter", make_ctx(locked, samples=3000), fractions=(1.0,), restarts=2)
    assert r["restarts"] == 2 and r["parameters"] < 1000  # tone curves, colour mix, bias, 3x3 filters
    # the thief knows the editor's code: fitting its few parameters by gradient from a random key unlocks
    assert r["best"] >= reference["unlocked"] - TRAINED_TOL, (r, reference)


def test_editor_family_is_the_editor():
    """At a key's own parameters the differentiable family reproduces that key's edit (to rounding)."""
    import numpy as np

    from modellock.editors import editor_class

    key = Key.create("keyed-filter", PROMPT)
    images = [np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8) for i in range(4)]
    edited = np.stack(get_editor(key).edit(images)).astype(np.float32)
    family = editor_class("keyed-filter").attack_family(key)
    x = torch.tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2) / 255
    with torch.no_grad():
        out = family(x).permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(out - edited).max() <= 1.01  # the editor rounds its edit before blending


def test_distillation_can_win_and_is_compared_with_scratch(locked, reference, tmp_path):
    key, source, model, root = locked
    # injection: the teacher sees the key's edit of every query, so its answers are mostly right: a student
    # distilled from them learns the task from the thief's unlabelled images
    ctx = make_ctx(locked, samples=6000, work_dir=tmp_path)
    r = run_attack("distillation", ctx, queries=(600,), soft_targets=(True,), view=get_editor(key).edit)
    assert [s["targets"] for s in r["students"]] == ["soft"]
    assert r["gain"] == pytest.approx(r["best"] - r["scratch"])
    assert r["best"] >= reference["unlocked"] - 0.25 and r["gain"] >= 0.1, (r, reference)
    assert not list(tmp_path.glob("distillation-*.json"))  # an injected run's scores are never stored
    plain = run_attack("distillation", ctx, queries=(600,), soft_targets=(False,))
    assert [s["targets"] for s in plain["students"]] == ["top-1"] and plain["scratch"] == r["scratch"]
    assert set(plain["teacher_score_by_query_kind"]["600"]) == {"clean", "generic transform", "guessed prompt"}
    # without the key the locked teacher's answers are mostly wrong: its student learns less
    assert plain["best"] < r["best"]


def _colour_classes(root, n_train: int, n_test: int, seed: int = 0):
    """10 classes of noisy single-colour 32x32 images whose hues overlap their neighbours' (chance 0.1, far from
    1.0 for any model): small-cnn learns them from scratch within a short budget."""
    import colorsys

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            c = i % 10
            hue = ((c + rng.uniform(-0.7, 0.7)) / 10) % 1.0
            rgb = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1), rng.uniform(0.5, 1))) * 255
            folder = root / split / f"colour{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(rgb + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)).save(
                folder / f"{i:05d}.png")
    return open_source(root)


@pytest.mark.slow
def test_weights_that_give_nothing_gain_nothing_over_scratch(locked, tmp_path):
    """A randomly initialised network of the locked model's shape, on data where training from scratch does well:
    no trained attack gains more than the measurement's noise over training from scratch, although some score far
    above that network (the share "undone" would credit the weights with what the thief's data is worth)."""
    from modellock.attacks.scratch import scratch_baseline
    from modellock.attacks.suite import noise_level
    from modellock.model_folder import LockedModel
    from modellock.tasks import task_for

    key, _, model, _ = locked
    source = _colour_classes(tmp_path / "colours", 400, 240)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        net = task_for(model.config).model_from_spec(model.config["architecture"])
    random = LockedModel(net, {**model.config, "classes": source.classes + ["locked"]})
    ctx = AttackContext(random, source, Machinery.of(key), budget=ONE_CELL, fractions=(1.0,), progress=False)
    scratch = scratch_baseline(ctx, 1.0)["best"]
    random_score = ctx.score(ctx.clean_outputs())
    assert scratch >= random_score + 0.45, (scratch, random_score)  # the thief's 400 images alone do well
    noise = noise_level(len(ctx.test))
    options = {"refit-head": {}, "fine-tune": {}, "input-adapter": {}, "unet-adapter": {"widths": (16, 32, 32)},
               "editor-family-adapter": {"restarts": 1}, "distillation": {"queries": (400,), "soft_targets": (True,)}}
    runs = {name: run_attack(name, ctx, **o) for name, o in options.items()}
    gains = {name: r["gain"] for name, r in runs.items()}
    assert max(gains.values()) <= noise, (gains, noise)
    assert runs["refit-head"]["best"] >= random_score + 0.4, (runs["refit-head"]["best"], random_score)


def test_summary_fields():
    from modellock.attacks.suite import READING, summarise

    result = {"metric": "accuracy", "n_test": 1000,
              "reference": {"locked_clean": 0.0, "locked_clean_without_locked_class": 0.1, "unlocked": 0.9},
              "attacks": {"input-adapter": {"best": 0.8, "trained": True, "measure": "gain", "gain": 0.03,
                                            "gain_fraction": 0.1, "gain_setting": "10% clean (100 images)"},
                          "guessed-prompts": {"best": 0.3, "measure": "undone", "best_setting": "prompt 'x'"},
                          "generic-transforms": {"best": 1.0, "measure": "undone", "best_setting": "too good"},
                          "similar-prompts": {"best": 0.9, "measure": "tolerance"},
                          "fine-tune": {"best": 0.6, "trained": True, "measure": "gain", "gain": -0.02,
                                        "gain_fraction": 0.05},
                          "distillation": {"best": 0.4, "trained": True, "measure": "gain", "gain": -0.01}}}
    s = summarise(result)
    # trained attacks are judged by their gain over scratch, never by the share undone (0.8 would be 88 %)
    assert s["worst_gain_over_scratch"] == 0.03 and s["worst_gain_attack"] == "input-adapter"
    assert s["worst_gain_fraction"] == 0.1 and s["worst_gain_setting"] == "10% clean (100 images)"
    assert s["worst_case_attack"] == "generic-transforms" and s["worst_case_undone"] == 1.0  # 112 % clamped
    assert s["fine_tune_gain"] == -0.02 and s["fine_tune_gain_fraction"] == 0.05 and s["distillation_gain"] == -0.01
    assert s["holds"] is False and s["fails"] == ["worst_gain_over_scratch", "worst_case_undone"]
    assert s["line"].startswith("the lock does not hold: a trained attack beats training from scratch and an "
                                "untrained attack undoes more than 25%")
    assert ("worst gain over scratch +0.0300 accuracy (within noise, +-0.045) (input-adapter at 10% clean data)"
            in s["line"])
    assert "worst case undone 100% (generic-transforms: too good)" in s["line"]
    del result["attacks"]["generic-transforms"]
    result["attacks"]["input-adapter"]["gain"] = 0.0
    s = summarise(result)
    assert s["holds"] is True and s["fails"] == [] and s["line"].startswith("the lock holds;")
    assert s["worst_case_undone"] == pytest.approx(0.25) and "guessed-prompts" in s["line"]
    result["attacks"]["guessed-prompts"]["best"] = 0.35
    s = summarise(result)
    assert s["fails"] == ["worst_case_undone"] and "25%" in READING
    assert summarise({"metric": "accuracy", "n_test": 10, "reference": result["reference"], "attacks": {}})[
        "holds"] is None
