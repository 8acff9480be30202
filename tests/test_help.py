"""`--help` of every command at 80 columns: every line fits, no option name or value is cut, every option
says what it does (grouped in panels); `-h` and `--version` work; the defaults the help names are the code's."""

import re

import pytest
import typer

from modellock.cli import app, main


def _commands(group, path=()):
    """``(path, click command)`` for the root, every command and every subcommand."""
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _help(capsys, monkeypatch, *args) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    main([*args, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "modellock" for p, _ in COMMANDS])
def test_help_fits_80_columns_and_describes_every_option(path, command, capsys, monkeypatch):
    text = _help(capsys, monkeypatch, *path)
    lines = text.splitlines()
    assert "Usage: modellock" in text
    too_long = [line for line in lines if len(line) > 80]
    assert not too_long, too_long
    assert "…" not in text, [line for line in lines if "…" in line]  # nothing cut
    words = set(re.findall(r"-[\w-]+", text))
    for param in command.params:
        if param.name == "help":
            continue
        for name in [*param.opts, *param.secondary_opts] if param.param_type_name == "option" else []:
            assert name in words, f"{name} not shown whole in `{' '.join(path)} --help`"
        assert (param.help or "").strip(), f"{' '.join(path)}: {param.opts[0]} has no description"
    if len([p for p in command.params if p.name != "help"]) > 6:  # long option lists come in panels
        assert len(re.findall(r"^╭─ ", text, re.M)) >= 3, text


def test_short_help_and_version(capsys, monkeypatch):
    import modellock

    assert "Usage: modellock lock" in _help(capsys, monkeypatch, "lock")  # --help
    monkeypatch.setenv("COLUMNS", "80")
    main(["lock", "-h"])
    assert "Usage: modellock lock" in capsys.readouterr().out
    main(["--version"])
    assert capsys.readouterr().out.strip() == f"modellock {modellock.__version__}"


def test_training_options_name_the_code_defaults(capsys, monkeypatch):
    """--epochs, --batch-size, --lr (and the rest) say their default: the one TrainConfig / LockRecipe has."""
    from modellock.lock.lock_set import LockRecipe
    from modellock.train import TrainConfig

    commands = dict((" ".join(p), c) for p, c in COMMANDS)
    expected = {"epochs": TrainConfig.epochs, "batch_size": TrainConfig.batch_size, "lr": TrainConfig.lr,
                "seed": TrainConfig.seed, "num_workers": TrainConfig.num_workers}
    for name in ("lock", "train"):
        params = {p.name: p for p in commands[name].params}
        recipe = {f: getattr(LockRecipe, f) for f in ("edited_fraction", "handling_share", "handling_jpeg")}
        for field, value in {**expected, **(recipe if name == "lock" else {})}.items():
            found = re.search(r"\(default ([\d.e-]+)", params[field].help)
            assert found and float(found.group(1)) == value, (name, field, params[field].help)
    text = _help(capsys, monkeypatch, "lock")
    for flag in ("--epochs", "--batch-size", "--lr"):
        line = next(line for line in text.splitlines() if f" {flag} " in line)
        assert "default" in text[text.index(line):text.index(line) + 400], line
