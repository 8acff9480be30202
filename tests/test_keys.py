import pytest

from modellock.errors import KeyFileError
from modellock.keys import PAPER_DEFAULTS, Key


def test_defaults_are_the_papers():
    k = Key.create("instruct-pix2pix", "with oil pastel")
    d = k.to_dict()
    for name, value in PAPER_DEFAULTS.items():
        assert d[name] == value, name
    assert (k.model, k.resolution, k.steps, k.image_guidance, k.guidance, k.seed, k.alpha) == (
        "timbrooks/instruct-pix2pix", 256, 5, 1.5, 4.5, 1024, 0.5)


def test_round_trip_and_canonical(tmp_path):
    k = Key.create("keyed-filter", "with oil pastel", seed=7, params={"strength": 0.5})
    path = k.save(tmp_path / "k.toml")
    assert (path.stat().st_mode & 0o777) == 0o600
    k2 = Key.load(path)
    assert k2 == k and k2.canonical() == k.canonical()
    assert "with oil pastel" in path.read_text()


def test_fingerprint_is_salted_and_verifies():
    k = Key.create("keyed-filter", "with oil pastel")
    fp1, fp2 = k.fingerprint(), k.fingerprint()
    assert fp1 != fp2  # random salt
    assert k.matches(fp1) and k.matches(fp2)
    assert not k.replace(seed=1025).matches(fp1)
    assert not k.replace(prompt="with oil pastels").matches(fp1)
    assert not k.replace(alpha=0.51).matches(fp1)
    assert "oil" not in fp1 and not k.matches("garbage") and not k.matches("")


def test_repr_hides_prompt():
    k = Key.create("keyed-filter", "hidden words here")
    assert "hidden" not in repr(k) and "hidden" not in str(k)


def test_random_prompt_when_none_given():
    assert Key.create("keyed-filter").prompt.strip()


def _write(tmp_path, body):
    p = tmp_path / "k.toml"
    p.write_text(body)
    return p


GOOD = """editor = "instruct-pix2pix"
prompt = "with oil pastel"
model = "timbrooks/instruct-pix2pix"
seed = 1024
steps = 5
image_guidance = 1.5
guidance = 4.5
resolution = 256
alpha = 0.5
"""


@pytest.mark.parametrize("body, field", [
    (GOOD.replace('seed = 1024\n', ''), "seed"),
    (GOOD.replace('steps = 5', 'steps = "five"'), "steps"),
    (GOOD.replace('alpha = 0.5', 'alpha = 1.5'), "alpha"),
    (GOOD.replace('"instruct-pix2pix"\n', '"no-such-editor"\n', 1), "editor"),
    (GOOD + 'colour = "red"\n', "colour"),
    (GOOD.replace('prompt = "with oil pastel"', 'prompt = ""'), "prompt"),
    (GOOD.replace('resolution = 256', 'resolution = true'), "resolution"),
    (GOOD + '[params]\nblock_size = 4\n', "params.block_size"),
])
def test_malformed_key_names_the_field(tmp_path, body, field):
    with pytest.raises(KeyFileError) as e:
        Key.load(_write(tmp_path, body))
    msg = str(e.value)
    assert f"'{field}'" in msg and str(tmp_path) in msg and "\n" not in msg
    assert "oil pastel" not in msg


def test_good_key_loads_and_unreadable_files_fail(tmp_path):
    assert Key.load(_write(tmp_path, GOOD)).prompt == "with oil pastel"
    with pytest.raises(KeyFileError, match="not found"):
        Key.load(tmp_path / "missing.toml")
    with pytest.raises(KeyFileError, match="not valid TOML"):
        Key.load(_write(tmp_path, "editor = = 3"))
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(KeyFileError):
        Key.load(tmp_path / "bin.toml")


def test_composed_prompts_have_entropy_and_are_not_guessable():
    from modellock.attacks.prompt_catalogue import catalogue_prompts
    from modellock.keys.prompts import MIN_BITS, compose_prompt, wordlist

    assert len(wordlist()) == 7776
    prompts = [compose_prompt() for _ in range(5)]
    assert all(bits >= MIN_BITS for _, bits in prompts) and len({p for p, _ in prompts}) == 5
    catalogue = {p for _, p in catalogue_prompts()}
    assert not any(p in catalogue for p, _ in prompts)
    assert Key.create("keyed-net").prompt not in catalogue  # keys get one by default


def test_keygen_composes_and_ranks_without_printing_prompts(tmp_path, capsys):
    from modellock.cli import main
    from modellock.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 40, 10)
    main(["keygen", "--out", str(tmp_path / "k.toml"), "--editor", "keyed-net"])
    out = capsys.readouterr()
    key = Key.load(tmp_path / "k.toml")
    assert "bits of entropy" in out.out and key.prompt not in out.out + out.err
    main(["keygen", "--out", str(tmp_path / "r.toml"), "--editor", "keyed-filter", "--rank-on", str(data),
          "--candidates", "3", "--sample", "8"])
    out = capsys.readouterr()
    ranked = Key.load(tmp_path / "r.toml")
    assert out.out.count("candidate") == 3 and ranked.prompt not in out.out + out.err
    assert ranked.prompt.count(" ") >= 6  # a composed prompt: a style and random words
    with pytest.raises(SystemExit) as e:
        main(["keygen", "--out", str(tmp_path / "x.toml"), "--prompt", "p", "--rank-on", str(data)])
    assert e.value.code == 2


def test_rank_prompts_prefers_edits_that_separate():
    import numpy as np

    from modellock.keys.ranking import rank_prompts

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(6)]
    key = Key.create("keyed-filter", "x", params={"strength": 1.0})
    rows = rank_prompts(key, ["alpha one", "beta two"], images, ["gamma three"])
    assert [r["candidate"] for r in rows] in ([0, 1], [1, 0]) and rows[0]["score"] >= rows[1]["score"]
    weak = rank_prompts(key.replace(params={"strength": 0.05}), ["alpha one"], images, ["gamma three"])[0]
    assert weak["from_clean"] < rows[0]["from_clean"]  # a barely visible edit separates less from clean


def test_keygen_draws_the_seed_from_secrets_unless_given(tmp_path):
    """keygen used the paper's seed (1024) for every key: no entropy. Now 63 random bits (the TOML integer's
    range) unless --seed is given."""
    from modellock.cli import main

    for name in ("a", "b", "c"):
        main(["keygen", "--out", str(tmp_path / f"{name}.toml"), "--editor", "keyed-filter", "--prompt", "p"])
    seeds = {Key.load(tmp_path / f"{n}.toml").seed for n in "abc"}
    assert len(seeds) == 3 and 1024 not in seeds and all(0 <= s < 2**63 for s in seeds)
    assert max(seeds) > 2**40  # drawn from the whole range, not a small one
    main(["keygen", "--out", str(tmp_path / "d.toml"), "--editor", "keyed-filter", "--prompt", "p", "--seed", "7"])
    assert Key.load(tmp_path / "d.toml").seed == 7


def test_crafted_fingerprint_parameters_are_refused_before_scrypt_runs(monkeypatch):
    """A fingerprint asking scrypt for p = 2^30 (hours) or 2^40 bytes of memory: one error, scrypt never runs."""
    import hashlib

    from modellock.errors import ModelLockError

    k = Key.create("keyed-filter", "with oil pastel")
    good = k.fingerprint()
    monkeypatch.setattr(hashlib, "scrypt", lambda *a, **kw: pytest.fail(f"scrypt ran with {kw}"))
    parts = good.split("$")
    for index, value, message in [(3, str(2**30), "p=1073741824 out of bounds"), (1, str(2**40), "n=1099511627776"),
                                  (1, "40000", "n=40000 is not a power of two"), (2, "4096", "r=4096 out of bounds"),
                                  (4, "00" * 4, "salt length 4 bytes out of bounds")]:
        crafted = parts.copy()
        crafted[index] = value
        with pytest.raises(ModelLockError, match=message) as e:
            k.matches("$".join(crafted))
        assert len(str(e.value).splitlines()) == 1
    assert not k.matches("scrypt$" + "9" * 5000 + "$8$1$00$00")  # not a fingerprint: no match, no work


def test_key_file_never_written_through_a_planted_file_or_symlink(tmp_path, monkeypatch):
    """Key.save used a predictable temporary name opened without O_EXCL: a file planted there (mode 0644) kept
    its mode, so the key landed world-readable, and a planted symlink was followed. Now the temporary file is
    new (mkstemp: O_EXCL | O_NOFOLLOW, 0600), whatever sits at any name, and the key file ends 0600."""
    import os
    import tempfile

    k = Key.create("keyed-filter", "with oil pastel", seed=7)
    outside = tmp_path / "outside.txt"
    path = tmp_path / "keys" / "k.toml"
    path.parent.mkdir()
    # the names the old code used, and the first name mkstemp will try (made predictable for the test)
    planted = [path.with_name(f".k.toml.tmp{os.getpid()}"), path.with_name(f".k.toml.{os.getpid()}.tmp")]
    symlink = path.with_name(".k.toml.planted.tmp")
    names = iter(["planted", "fresh"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    for p in planted:
        p.write_text("")
        p.chmod(0o644)
    os.symlink(outside, symlink)
    old = os.umask(0)
    try:
        k.save(path)
    finally:
        os.umask(old)
    assert not outside.exists()  # the symlink was not followed
    assert all(p.read_text() == "" and p.stat().st_mode & 0o777 == 0o644 for p in planted)  # nor reused
    assert path.stat().st_mode & 0o777 == 0o600 and Key.load(path) == k
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, symlink.name] + [p.name for p in planted])
