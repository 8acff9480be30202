"""Attack 2: near misses of the true prompt. Reads the key, on purpose: it measures how close a guess must be.

Variants come from rules (synonyms, word order, dropped and added words, plural/singular, letter case,
punctuation, spacing, one-letter typos) and are edited with the key's own machinery. They are
reported by rule and by their edit distance to the true prompt, never by their text (which would give
the prompt away).

Optional ranking: when a text-embedding model is available *offline* (a folder or a hub id already in
the local Hugging Face cache, named by ``$MODELLOCK_TEXT_EMBEDDING``, default
``sentence-transformers/all-MiniLM-L6-v2``; safetensors weights only), each variant gets its cosine
similarity to the true prompt, and ``--limit-prompts N`` keeps the N most similar. Without one the
ranking is skipped without a warning (``"ranking": null`` in the result) and the limit keeps the
closest variants by edit distance, every rule in turn.
"""

from __future__ import annotations

import os
import re

from . import register_attack
from .context import Candidate

DEFAULT_EMBEDDING = "sentence-transformers/all-MiniLM-L6-v2"

SYNONYMS: dict[str, list[str]] = {
    "painting": ["artwork", "picture"], "drawing": ["sketch", "illustration"], "sketch": ["drawing", "doodle"],
    "pastel": ["pastels", "crayon", "chalk"], "oil": ["wax"], "watercolor": ["watercolour", "aquarelle"],
    "color": ["colour"], "colors": ["colours", "hues"], "photo": ["photograph", "picture"],
    "image": ["picture"], "style": ["manner"], "with": ["using", "in"], "as": ["like", "into"],
    "in": ["with", "into"], "a": ["the", "one"], "an": ["the"], "the": ["a"], "make": ["turn", "render"],
    "turn": ["make", "transform"], "into": ["to", "as"], "print": ["engraving"], "charcoal": ["graphite"],
    "pencil": ["graphite", "crayon"], "small": ["tiny", "little"], "thick": ["heavy"], "strokes": ["marks"],
    "mosaic": ["tiling"], "tiles": ["pieces"], "window": ["pane"], "poster": ["placard"],
    "neon": ["fluorescent", "glowing"], "comic": ["cartoon", "manga"], "panel": ["frame"],
    "render": ["rendering"], "blackboard": ["chalkboard"], "tapestry": ["embroidery"],
    "blueprint": ["schematic"], "etching": ["engraving"], "linocut": ["woodcut"], "woodcut": ["linocut"],
    "cubist": ["cubism"], "pointillist": ["pointillism"], "stained": ["coloured"], "glass": ["crystal"],
    "embroidered": ["stitched"], "ukiyo-e": ["ukiyoe"], "low-poly": ["polygonal"], "brush": ["paint"],
    "impasto": ["textured"], "chalk": ["pastel"], "drawn": ["sketched"], "bright": ["vivid"],
    "dark": ["dim"], "old": ["vintage"], "picture": ["image"], "art": ["artwork"],
}
PREFIXES = ["make it ", "turn it ", "please "]
SUFFIXES = [" style", " effect", " please"]


def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences (strings: characters; lists: words)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _words(prompt: str) -> list[str]:
    return prompt.split()


def _longest(words: list[str]) -> int:
    return max(range(len(words)), key=lambda i: len(words[i]))


def variants(prompt: str) -> list[tuple[str, str]]:
    """``(rule, variant)`` pairs of near misses of ``prompt``, never ``prompt`` itself (may repeat a variant)."""
    w = _words(prompt)
    out: list[tuple[str, str]] = []
    for i, word in enumerate(w):
        bare = re.sub(r"[^\w-]", "", word).lower()
        for syn in SYNONYMS.get(bare, []):
            out.append(("synonym", " ".join(w[:i] + [syn] + w[i + 1:])))
    for i in range(len(w) - 1):
        out.append(("word order", " ".join(w[:i] + [w[i + 1], w[i]] + w[i + 2:])))
    if len(w) > 2:
        out.append(("word order", " ".join(reversed(w))))
    if len(w) > 1:
        out += [("dropped word", " ".join(w[:i] + w[i + 1:])) for i in range(len(w))]
    out += [("added words", p + prompt) for p in PREFIXES] + [("added words", prompt + s) for s in SUFFIXES]
    for i, word in enumerate(w):
        if len(word) > 2 and word.isalpha():
            other = word[:-1] if word.endswith("s") else word + "s"
            out.append(("plural/singular", " ".join(w[:i] + [other] + w[i + 1:])))
    out += [("letter case", prompt.upper()), ("letter case", prompt.title()), ("letter case", prompt.lower()),
            ("letter case", prompt[:1].upper() + prompt[1:])]
    stripped = prompt.rstrip(".!,;")
    out += [("punctuation", stripped + "."), ("punctuation", stripped + "!"), ("punctuation", stripped)]
    out += [("spacing", "  ".join(w)), ("spacing", prompt + " "), ("spacing", prompt.replace("-", " "))]
    if w:
        i = _longest(w)
        word = w[i]
        if len(word) > 3:
            m = len(word) // 2
            for typo in (word[:m] + word[m + 1:], word[:m] + word[m + 1] + word[m] + word[m + 2:],
                         word[:m] + word[m] + word[m:]):
                out.append(("typo", " ".join(w[:i] + [typo] + w[i + 1:])))
    return [(rule, v) for rule, v in out if v != prompt]


def text_embedder():
    """``embed(list of str) -> unit vectors`` from a local text model, or None when none is available offline."""
    name = os.environ.get("MODELLOCK_TEXT_EMBEDDING", DEFAULT_EMBEDDING)
    try:
        # lazy: transformers, only when a local text model is there
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
            model = AutoModel.from_pretrained(name, local_files_only=True, use_safetensors=True).eval()
        finally:
            hf_logging.set_verbosity(verbosity)
    except Exception:  # noqa: BLE001 - not installed, not cached, no safetensors: no ranking, by design
        return None

    def embed(texts: list[str]):
        with torch.inference_mode():
            batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)
            return torch.nn.functional.normalize(pooled, dim=1)

    return embed


def _round_robin(rows: list[dict]) -> list[dict]:
    by_rule: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["edit_distance"], r["rule"])):
        by_rule.setdefault(r["rule"], []).append(r)
    out, i = [], 0
    while len(out) < len(rows):
        for lst in by_rule.values():
            if i < len(lst):
                out.append(lst[i])
        i += 1
    return out


@register_attack("similar-prompts", measure="tolerance")
def similar_prompts(ctx, key, extra_rules=None, exclude_key: bool = True) -> dict:
    """Near misses of the true prompt (synonyms, word order, added/removed words, plural, case, typos).

    ``extra_rules`` (tests) adds ``(rule, fn(prompt) -> list of variants)``; ``exclude_key=False`` keeps
    variants equal to the true prompt.
    """
    pairs = variants(key.prompt)
    for rule, fn in extra_rules or []:
        pairs += [(rule, v) for v in fn(key.prompt)]
    seen, rows, texts = set(), [], []
    for rule, text in pairs:
        if text in seen or not text.strip() or (exclude_key and text == key.prompt):
            continue
        seen.add(text)
        rows.append({"rule": rule, "edit_distance": edit_distance(key.prompt, text),
                     "word_distance": edit_distance(key.prompt.split(), text.split())})
        texts.append(text)
    embed = text_embedder()
    ranking = None
    if embed is not None and rows:
        vectors = embed([key.prompt] + texts)
        for r, sim in zip(rows, (vectors[1:] @ vectors[0]).tolist()):
            r["similarity"] = round(float(sim), 4)
        ranking = os.environ.get("MODELLOCK_TEXT_EMBEDDING", DEFAULT_EMBEDDING)
    for r, text in zip(rows, texts):
        r["_text"] = text
    order = sorted(rows, key=lambda r: -r["similarity"]) if ranking else _round_robin(rows)
    if ctx.limit_prompts is not None:
        order = order[: ctx.limit_prompts]
    counts: dict[str, int] = {}
    candidates = []
    for r in order:
        counts[r["rule"]] = counts.get(r["rule"], 0) + 1
        name = f"{r['rule']} #{counts[r['rule']]} (edit distance {r['edit_distance']})"
        info = {k: v for k, v in r.items() if k != "_text"}
        candidates.append(Candidate(name, key=key.replace(prompt=r["_text"]), info=info))
    result = ctx.sweep(candidates, "similar prompts")
    by_rule: dict[str, float] = {}
    by_distance: dict[str, float] = {}
    for row in result["candidates"]:
        by_rule[row["rule"]] = max(by_rule.get(row["rule"], 0.0), row["screen_score"])
        d = str(row["edit_distance"])
        by_distance[d] = max(by_distance.get(d, 0.0), row["screen_score"])
    result.update(
        n_variants=len(candidates), ranking=ranking, best_by_rule=by_rule,
        best_by_edit_distance=dict(sorted(by_distance.items(), key=lambda kv: int(kv[0]))),
        scores={row["name"]: row["screen_score"] for row in result["candidates"]},
    )
    return result
