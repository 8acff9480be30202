import pytest

from modellock.errors import KeyFileError
from modellock.key import PAPER_DEFAULTS, Key


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
