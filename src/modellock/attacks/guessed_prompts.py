"""Attack 1: guess the key prompt from a catalogue, with the key's editor and settings.

Every catalogue prompt (``prompt_catalogue.py``: 135 prompts, ``--limit-prompts N`` for the first N)
edits the screening subset with the attacker's machinery (by default the key's editor and settings
without its prompt: the strongest guesser), the best ``top_k`` are scored on the whole test split.
Reports the best guess and the distribution over all guesses. Never reads the key.
"""

from __future__ import annotations

from . import register_attack
from .context import Candidate
from .prompt_catalogue import catalogue_prompts


@register_attack("guessed-prompts", guesses_prompts=True)
def guessed_prompts(ctx, catalogue: list[tuple[str, str]] | None = None) -> dict:
    """Catalogue prompts (styles, media, artists, added objects, photo adjustments) with the key's machinery.

    ``catalogue`` replaces the built-in ``(family, prompt)`` list (tests inject one).
    """
    prompts = catalogue if catalogue is not None else catalogue_prompts()
    if ctx.limit_prompts is not None:
        prompts = prompts[: ctx.limit_prompts]
    candidates = [Candidate(prompt, key=ctx.machinery.key(prompt), info={"family": family})
                  for family, prompt in prompts]
    result = ctx.sweep(candidates, "guessed prompts")
    families: dict[str, float] = {}
    for row in result["candidates"]:
        families[row["family"]] = max(families.get(row["family"], 0.0), row["screen_score"])
    result.update(
        n_prompts=len(prompts),
        best_setting=f"prompt {result['best_setting']!r}" if result["best_setting"] is not None else None,
        best_by_family=families,
        scores={row["name"]: row["screen_score"] for row in result["candidates"]},
    )
    return result
