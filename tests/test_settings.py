"""Lock/train settings are checked by type and range (pydantic), the same way from a YAML --config, from flags
and from the Python API: one `error:` line naming the field (or flag) and the file, exit 2, nothing written."""

import pytest

from modellock import ModelLockError
from modellock.keys import Key
from modellock.lock.hardening import HardenSettings
from modellock.lock.lock_set import LockRecipe
from modellock.lock.settings import load_settings, recipe_from, train_config_from
from modellock.train import TrainConfig

BAD_YAML = [
    pytest.param("epochs: one\n", "epochs: input should be a valid integer", id="epochs-one"),
    pytest.param("lr: fast\n", "lr: input should be a valid number", id="lr-fast"),
    pytest.param("paired: maybe\n", "paired: input should be a valid boolean", id="paired-maybe"),
    pytest.param("epochs: yes\n", "epochs: expected a number", id="epochs-bool"),
    pytest.param("epochs: 0\n", "epochs: input should be greater than or equal to 1", id="epochs-zero"),
    pytest.param("lr: 0\n", "lr: input should be greater than 0", id="lr-zero"),
    pytest.param("edited_fraction: 1.5\n", "edited_fraction: input should be less than or equal to 1", id="fraction"),
    pytest.param("decoy_fraction: -0.1\n", "decoy_fraction: input should be greater than or equal to 0",
                 id="negative-fraction"),
    pytest.param("clean_target: nothing\n", "clean_target: input should be 'wrong-label'", id="clean-target"),
    pytest.param("mixed_precision: fp8\n", "mixed_precision: input should be 'no', 'bf16', 'fp16' or 'auto'", id="precision"),
    pytest.param("image_size: 4\n", "image_size: input should be greater than or equal to 8", id="image-size"),
    pytest.param("batch-size: 2.5\n", "batch-size: input should be a valid integer", id="dashed-name"),
]


def _paths(tmp_path):
    key = tmp_path / "k.toml"
    Key.create("keyed-filter", "with oil pastel").save(key)
    return key, tmp_path / "data", tmp_path / "out"


@pytest.mark.parametrize("yaml_text,expected", BAD_YAML)
def test_bad_yaml_value_is_one_line_naming_field_and_file(yaml_text, expected, tmp_path, capsys):
    from modellock.cli import main

    key, data, out = _paths(tmp_path)
    config = tmp_path / "lock.yaml"
    config.write_text(yaml_text)
    for command in (["lock", "--key", str(key)], ["train"]):
        with pytest.raises(SystemExit) as e:
            main([*command, "--data", str(data), "--out", str(out), "--config", str(config)])
        assert e.value.code == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert lines == [lines[0]] and lines[0].startswith(f"error: config file {config}: {expected}"), lines
        assert "Traceback" not in lines[0] and not out.exists()


@pytest.mark.parametrize("args,expected", [
    (["--epochs", "0"], "--epochs: input should be greater than or equal to 1, not 0"),
    (["--lr", "0"], "--lr: input should be greater than 0, not 0.0"),
    (["--edited-fraction", "1.5"], "--edited-fraction: input should be less than or equal to 1, not 1.5"),
    (["--handling-jpeg", "2"], "--handling-jpeg: input should be less than or equal to 1, not 2.0"),
    (["--num-workers", "-1"], "--num-workers: input should be greater than or equal to 0, not -1"),
    (["--mixed-precision", "fp8"], "--mixed-precision: input should be 'no', 'bf16', 'fp16' or 'auto', not 'fp8'"),
])
def test_flags_go_through_the_same_checks(args, expected, tmp_path, capsys):
    from modellock.cli import main

    key, data, out = _paths(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["lock", "--key", str(key), "--data", str(data), "--out", str(out), *args])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {expected}"


def test_good_yaml_values_are_read_as_their_types(tmp_path):
    """YAML 1.1 reads `1e-3` as a string: it is still a learning rate; flags win over the file."""
    config = tmp_path / "lock.yaml"
    config.write_text("epochs: 3\nlr: 1e-3\npaired: false\nedited_fraction: 1\nbatch-size: 16\n")
    s = load_settings(config, epochs=5, paired=None)
    train, recipe = train_config_from(s), recipe_from(s)
    assert (train.epochs, train.lr, train.batch_size) == (5, 0.001, 16) and isinstance(train.lr, float)
    assert recipe.paired is False and recipe.edited_fraction == 1.0 and isinstance(recipe.edited_fraction, float)
    config.write_text("epochz: 3\n")
    with pytest.raises(ModelLockError, match=f"config file {config}: unknown setting 'epochz'"):
        load_settings(config)


def test_the_api_checks_the_same_fields():
    with pytest.raises(ModelLockError, match="recipe: paired: input should be a valid boolean.*not 'maybe'"):
        LockRecipe(paired="maybe")
    with pytest.raises(ModelLockError, match="recipe: adversary: input should be less than or equal to 1"):
        LockRecipe(harden=HardenSettings(adversary=2.0))
    with pytest.raises(ModelLockError, match="recipe: thief_every: input should be greater than or equal to 1"):
        LockRecipe.from_dict({"thief_every": 0})
    with pytest.raises(ModelLockError, match="train config: lr: input should be a valid number.*not 'fast'"):
        TrainConfig(lr="fast")
    with pytest.raises(ModelLockError, match=r"decoy_fraction must be between 0 and 1 - edited_fraction \(0.1"):
        LockRecipe(edited_fraction=0.9, decoy_fraction=0.5)
    assert TrainConfig(epochs="3").epochs == 3 and LockRecipe(edited_fraction=1).decoy_fraction == 0.0


def test_recipe_nests_its_hardening_and_reads_the_levers_flat(tmp_path):
    """``LockRecipe.harden`` is a ``HardenSettings``; a YAML file, the flags and config.json's ``lock.recipe`` name
    its levers flat, as before, and give the same recipe; ``to_dict`` (config.json) writes them flat."""
    nested = LockRecipe(decoy_keys=8, harden=HardenSettings(adversary=0.25, thief_every=3, separation=0.1))
    config = tmp_path / "lock.yaml"
    config.write_text("decoy_keys: 8\nadversary: 0.25\nthief_every: 3\n")
    from_yaml_and_flag = recipe_from(load_settings(config, separation=0.1))
    flat = nested.to_dict()
    assert "harden" not in flat and flat["adversary"] == 0.25 and flat["thief_every"] == 3 and list(flat)[-1] == "seed"
    assert "adversary_lr" not in flat  # not a recipe setting
    assert from_yaml_and_flag == nested == LockRecipe.from_dict(flat)
    assert LockRecipe.from_dict({"decoy_keys": 8, "harden": {"adversary": 0.25, "thief_every": 3, "separation": 0.1}}) \
        == nested != LockRecipe(decoy_keys=8)
    assert from_yaml_and_flag.harden.active and not LockRecipe().harden.active
    with pytest.raises(ModelLockError, match="recipe: adversary given both flat and under harden"):
        LockRecipe.from_dict({"adversary": 0.1, "harden": {"adversary": 0.2}})
    config.write_text("decoy_keys: 8\nseparation: 0.1\nharden:\n  adversary: 0.25\n  thief-every: 3\n")
    assert recipe_from(load_settings(config)) == nested  # or nested, as the Python API nests them
    for text, message in (("harden:\n  adversary: lots\n", "harden.adversary: input should be a valid number"),
                          ("harden:\n  adversry: 0.5\n", "harden.adversry: unknown hardening lever"),
                          ("adversary: 0.1\nharden:\n  adversary: 0.2\n", "adversary given both flat and under harden"),
                          ("harden: 0.5\n", "harden: expected a mapping of hardening levers")):
        config.write_text(text)
        with pytest.raises(ModelLockError, match=message):
            load_settings(config)
