"""What a model folder keeps of an evaluation and an attack run: figures and neutral labels, never a wrong key's
prompt, a guessed prompt or a diffusion model's id (they narrow the key)."""

from __future__ import annotations


def stored_evaluation(result: dict) -> dict:
    """An evaluation as a model folder keeps it: every wrong key under a neutral label (``wrong key 1``, ...) in
    every field and text, since a wrong key's name (``prompt 'with oil pastel'``: a pool prompt that is not the
    key) narrows the key."""
    names: list[str] = []
    for field, value in result.items():
        if field.startswith("wrong_key") and isinstance(value, dict):
            names += [n for n in value if n not in names]
    labels = {n: f"wrong key {i}" for i, n in enumerate(names, 1)}

    def walk(x):
        if isinstance(x, str):
            for name in sorted(labels, key=len, reverse=True):
                x = x.replace(name, labels[name])
            return x
        if isinstance(x, dict):
            return {walk(k): walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return walk(result)


# what an attack summary keeps as text in a model folder: the attack's registry name; attack settings keep numbers
# and these names only (never a prompt tried, nor a diffusion model's id)
_SUMMARY_TEXT = ("worst_case_attack", "worst_gain_attack")  # attack names, checked against the registry
_SUMMARY_FIGURES = ("worst_gain_over_scratch", "worst_case_undone")  # what ``fails`` may name
_SETTINGS_TEXT = ("budget", "attacker_settings", "editor")


def stored_attack_summary(summary: dict, settings: dict | None = None, attack_names=()) -> dict:
    """An attack summary as a model folder keeps it: the figures (numbers, lists of numbers, numbers by attack
    name), the worst attack's name and the one-line verdict without the setting it names (a guessed prompt, a
    diffusion model); settings as numbers. ``attack_names``: the registered attacks (the only text kept as a name;
    ``modellock.attacks.available_attacks()``)."""
    attack_names = set(attack_names)

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def plain(v) -> bool:
        return v is None or isinstance(v, bool) or number(v) or (isinstance(v, list) and all(map(number, v))) or (
            isinstance(v, dict) and all(k in attack_names and (x is None or number(x)) for k, x in v.items()))

    out = {k: v for k, v in summary.items() if plain(v) or (k in _SUMMARY_TEXT and v in attack_names)}
    if isinstance(summary.get("fails"), list) and all(f in _SUMMARY_FIGURES for f in summary["fails"]):
        out["fails"] = list(summary["fails"])
    line, setting = summary.get("line"), summary.get("worst_case_setting")
    if isinstance(line, str):
        out["line"] = line.replace(setting, "its best setting") if isinstance(setting, str) and setting else line
    kept = {k: v for k, v in (settings or {}).items() if plain(v) or (k in _SETTINGS_TEXT and isinstance(v, str))}
    return {**out, **({"settings": kept} if kept else {})}
