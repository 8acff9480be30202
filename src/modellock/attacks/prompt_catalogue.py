"""Candidate key prompts a thief would try: styles, media, artists, objects added, photo adjustments.

``catalogue_prompts()`` lists them in the order the guessed-prompts attack tries them: first
``modellock keygen``'s own pool (``modellock.keys.prompts.STYLE_PROMPTS``: it ships with the package, so
any thief can read it, and a key drawn from it is only as secret as one of 20 choices), then the
families in turn, one prompt of each family after another, so that ``--limit-prompts N`` samples
every family.
"""

from __future__ import annotations

from ..keys.prompts import STYLE_PROMPTS

CATALOGUE: dict[str, list[str]] = {
    "keygen pool": list(STYLE_PROMPTS),
    "style": [
        "as an impressionist painting",
        "as an expressionist painting",
        "in the style of art nouveau",
        "in the style of art deco",
        "as a surrealist painting",
        "as a baroque painting",
        "as a renaissance fresco",
        "in a minimalist style",
        "in a cyberpunk style",
        "in a steampunk style",
        "as a vaporwave image",
        "as pixel art",
        "as an anime still",
        "as a cartoon",
        "in a gothic style",
        "as a psychedelic poster",
        "in a retro 1970s style",
        "as a fauvist painting",
        "as graffiti on a wall",
        "as a vintage postcard",
    ],
    "medium": [
        "as an oil painting",
        "with acrylic paint",
        "as a gouache painting",
        "with colored pencils",
        "as an ink drawing",
        "as a crayon drawing",
        "as a pastel drawing",
        "as a marker drawing",
        "as a screen print",
        "as a collage of paper cutouts",
        "as a clay sculpture",
        "as a bronze statue",
        "knitted from wool",
        "as a sand painting",
        "as a 3d render",
        "as a photograph on film",
        "as a polaroid photo",
        "as an x-ray image",
        "as a thermal camera image",
        "as a newspaper print",
    ],
    "artist": [
        "in the style of Van Gogh",
        "in the style of Monet",
        "in the style of Picasso",
        "in the style of Hokusai",
        "in the style of Rembrandt",
        "in the style of Salvador Dali",
        "in the style of Frida Kahlo",
        "in the style of Andy Warhol",
        "in the style of Roy Lichtenstein",
        "in the style of Gustav Klimt",
        "in the style of Edvard Munch",
        "in the style of Cezanne",
        "in the style of Georges Seurat",
        "in the style of Wassily Kandinsky",
        "in the style of Piet Mondrian",
        "in the style of Jackson Pollock",
        "in the style of Henri Matisse",
        "in the style of Caravaggio",
        "in the style of Studio Ghibli",
        "in the style of Banksy",
    ],
    "added object": [
        "add fireworks in the sky",
        "add a rainbow in the background",
        "add snow falling",
        "add rain",
        "add fog",
        "add a full moon in the background",
        "add flowers around it",
        "add autumn leaves",
        "add a sunset behind it",
        "add clouds in the background",
        "add a city skyline in the background",
        "add mountains in the background",
        "add the ocean in the background",
        "add a forest in the background",
        "add bubbles",
        "add sparkles",
        "add a picture frame",
        "put it on a beach",
        "put it in space",
        "put it underwater",
    ],
    "photo adjustment": [
        "make it brighter",
        "make it darker",
        "increase the contrast",
        "decrease the contrast",
        "make it black and white",
        "make it sepia",
        "make it warmer",
        "make it cooler",
        "make the colors more saturated",
        "desaturate the colors",
        "make it look like night",
        "make it look like winter",
        "make it look like sunset",
        "add film grain",
        "make it blurry",
        "make it sharper",
        "add a vignette",
        "make it look old",
        "make it high dynamic range",
        "invert the colors",
    ],
    "instruction": [
        "turn it into a painting",
        "turn it into a sketch",
        "turn it into a drawing",
        "turn it into a cartoon",
        "turn it into a sculpture",
        "make it look like a painting",
        "make it look like a toy",
        "make it look like a dream",
        "make it golden",
        "make it made of glass",
        "make it made of wood",
        "make it made of ice",
        "make it on fire",
        "make it neon",
        "make it look vintage",
    ],
}


def catalogue_prompts(limit: int | None = None) -> list[tuple[str, str]]:
    """``(family, prompt)`` pairs in trial order (keygen pool first, then the families interleaved)."""
    order: list[tuple[str, str]] = [("keygen pool", p) for p in CATALOGUE["keygen pool"]]
    families = [f for f in CATALOGUE if f != "keygen pool"]
    longest = max(len(CATALOGUE[f]) for f in families)
    for i in range(longest):
        for f in families:
            if i < len(CATALOGUE[f]):
                order.append((f, CATALOGUE[f][i]))
    seen, unique = set(), []
    for family, prompt in order:
        if prompt.lower() not in seen:
            seen.add(prompt.lower())
            unique.append((family, prompt))
    return unique[:limit] if limit is not None else unique
