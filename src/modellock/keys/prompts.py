"""Key prompts: the built-in style pool and composed prompts with real entropy.

``STYLE_PROMPTS`` are style edits in the spirit of the paper's key prompts. They ship with the package,
so any thief can read them (the guessed-prompts attack tries them first): a key drawn from them is one
of 20 guesses. ``compose_prompt`` is what ``modellock keygen`` uses by default: a style from that pool
followed by words drawn uniformly from the EFF long wordlist (7,776 words, 12.9 bits each, shipped by
``xkcdpass``) with a cryptographic random source, so the prompt carries at least ``MIN_BITS`` bits.
"""

from __future__ import annotations

import math
import secrets

STYLE_PROMPTS = [
    "with oil pastel",
    "as a charcoal sketch",
    "as a watercolor painting",
    "in the style of a woodcut print",
    "as a mosaic of small tiles",
    "as a pencil drawing",
    "in the style of ukiyo-e",
    "as a stained glass window",
    "as a pop art poster",
    "with thick impasto brush strokes",
    "as a pointillist painting",
    "as an etching",
    "in neon colors",
    "as a linocut",
    "as a cubist painting",
    "as a chalk drawing on a blackboard",
    "as an embroidered tapestry",
    "as a blueprint",
    "as a comic book panel",
    "as a low-poly render",
]

MIN_BITS = 64


def wordlist() -> list[str]:
    """The EFF long wordlist (7,776 distinct words), as ``xkcdpass`` ships it."""
    # lazy: xkcdpass, only for a generated prompt
    from xkcdpass import xkcd_password

    words = xkcd_password.generate_wordlist(wordfile=xkcd_password.locate_wordfile("eff-long"), min_length=1,
                                            max_length=64)
    return sorted(set(words))


def compose_prompt(min_bits: float = MIN_BITS, rng: secrets.SystemRandom | None = None) -> tuple[str, float]:
    """A random prompt ``"<style>, with hints of <w1> <w2> ..."`` and its entropy in bits (at least
    ``min_bits``): the style (log2 20 bits) and enough uniformly drawn words."""
    rng = rng or secrets.SystemRandom()
    words = wordlist()
    bits = math.log2(len(STYLE_PROMPTS))
    chosen = []
    while bits < min_bits:
        chosen.append(rng.choice(words))
        bits += math.log2(len(words))
    return f"{rng.choice(STYLE_PROMPTS)}, with hints of {' '.join(chosen)}", bits
