"""``verify``: ask a suspect the evidence's questions and decide ``derived`` or ``independent``.

Per method the suspect's distance to the owner's model is set against the independent models' distances,
computed from their recorded answers in the suspect's own kind of answer (a label-only service is compared
with independent models' labels): a p-value and a threshold (``calibration.py``). The verdict is ``derived``
when any method's p-value is below ``alpha / methods``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelLockError
from ..tasks import task_type
from .calibration import null_fit, p_value, threshold, z_score
from .correlation import answer_kind, as_answered, correlation_distance
from .key_feature import adjusted_key_advantage, edit_strengths, key_advantage, key_response
from .record import GROUPS, SETS, Evidence
from .watermark import WatermarkRecord, decide_watermark, watermark_test
from .weights import similarity

EXIT_INDEPENDENT, EXIT_DERIVED = 0, 3
MIN_PER_SET = 8
# the key-feature statistic: the key advantage (default) or its strength-adjusted form (``key_feature.py``); the
# adjusted one was measured and not kept as the default (docs/benchmarks.md, "Proof of ownership")
KEY_STATISTICS = ("advantage", "adjusted")


def _budget(evidence: Evidence, max_queries: int | None) -> dict[str, np.ndarray]:
    """The indices of each set to ask: all of them, or the first images of each group of sets (clean, key, wrong
    keys: every wrong key's edit of each image asked) in proportion, within ``max_queries``."""
    sizes = evidence.set_sizes()
    need = sum(sizes.values())
    if max_queries is None or max_queries >= need:
        return {s: np.arange(n) for s, n in sizes.items()}
    take = {}
    for members in GROUPS.values():
        n = int(min(sizes[m] for m in members) * max_queries / need)
        if n < MIN_PER_SET:
            least = MIN_PER_SET * (len(sizes) - 1 + evidence.wrong_per_image)
            raise ModelLockError(f"--max-queries {max_queries}: too few to verify (at least {MIN_PER_SET} images per "
                                 f"sample set, {least} queries; the whole evidence asks {need})")
        take.update({m: np.arange(n) for m in members})
    take["key_wrong"] = evidence.wrong_rows(take["key_clean"])
    return take


# method -> (statistic's name, the side that means derived)
STATISTICS = {"sac-w": ("correlation distance", "below"), "sac-m": ("correlation distance", "below"),
              "key-feature": ("key advantage", "above"), "key-response": ("key's share of change", "above"),
              "weights": ("weight similarity", "above"),
              "watermark": ("watermark agreement", "above")}


def strength_ratio(evidence: Evidence, indices: np.ndarray) -> float:
    """``s_k / s_w`` on the asked key-feature images: the mean pixel change of the key's edit over the wrong
    keys' (``key_feature.edit_strengths``, from the record's own images, so records of any version have it); 1
    (the unadjusted advantage) when the wrong keys' edits change nothing."""
    s_k, s_w = edit_strengths(evidence.images["key_clean"][indices], evidence.images["key_edited"][indices],
                              evidence.images["key_wrong"][evidence.wrong_rows(indices)])
    return float(s_k.mean() / s_w.mean()) if s_w.mean() > 0 else 1.0


def distances(answers: dict[str, np.ndarray], owner: dict[str, np.ndarray], truth: np.ndarray,
              ratio: float | None = None) -> dict[str, float]:
    """Each method's distance (smaller: more like the owner's model) between a model's ``answers`` and the owner's
    network's (``owner[set]``, in the same kind of answer), per set.

    SAC compares three pairs and keeps the closest: the clean images with the locked network's answers to them
    (a copy of the weights), the clean images with its unlocked answers (its answers to their key edits: what
    fine-tuning, an adapter or a student of the unlock service reproduces), and the key edits with its answers to
    them (the edited domain the network was trained on). The key-feature test's distance is its key advantage
    negated (``key_feature.py``, against the ``truth`` of the asked images; with ``ratio`` = ``s_k / s_w``, the
    strength-adjusted advantage); NaN when the suspect's classes are not the owner's. The key-response test's is
    the share of the answers' movement the key's edit causes, negated: the suspect's answers alone, any classes."""
    out = {}
    for method, clean, keyed in (("sac-w", "sac_w", "sac_w_key"), ("sac-m", "sac_m", "sac_m_key")):
        out[method] = min(correlation_distance(answers[clean], owner[clean]),
                          correlation_distance(answers[clean], owner[keyed]),
                          correlation_distance(answers[keyed], owner[keyed]))
    out["key-response"] = -key_response(answers["key_clean"], answers["key_edited"], answers["key_wrong"])[0]
    same_classes = answers["key_edited"].shape[1] == truth.shape[1]
    if not same_classes:
        out["key-feature"] = float("nan")
    elif ratio is None:
        out["key-feature"] = -key_advantage(answers["key_edited"], answers["key_wrong"], truth)
    else:
        out["key-feature"] = -adjusted_key_advantage(answers["key_clean"], answers["key_edited"],
                                                     answers["key_wrong"], truth, ratio)
    return out


def noise_floors(mode: str, n_images: int, ratio: float = 1.0) -> dict[str, float]:
    """Per method, the least spread its null may have. Label and top-k answers make the key-feature statistic
    discrete: one image's answer moves it by ``w / n``, ``w`` the largest of its weights (1 on the key's answers,
    ``1 - ratio`` on the clean ones, ``ratio`` on the wrong key's; 1 when ``ratio`` <= 1). Independent models asked a
    few images often tie, and a spread fitted to ties would call a suspect one image off ``derived``: its null
    spread is at least one image's worth then. Full distributions (and the SAC distances) vary continuously and
    need no floor."""
    if answer_kind(mode)[0] in ("label", "top") and n_images > 0:
        return {"key-feature": max(1.0, ratio, abs(1.0 - ratio)) / n_images}
    return {}


def response_noise(answers: dict[str, np.ndarray]) -> float:
    """The key-response share's own sampling noise in a model's ``answers`` (``key_feature.key_response``): the
    least spread of the null it is judged against, so a suspect whose answers hardly move is not called derived."""
    return key_response(answers["key_clean"], answers["key_edited"], answers["key_wrong"])[1]


def _subset(sets: dict, take: dict) -> dict:
    return {s: a[take[s]] for s, a in sets.items() if s in take}


def _answered(stored: dict, mode: str, take: dict) -> dict[str, np.ndarray]:
    """Recorded full answers (``stored[mode][set]``) as a suspect answering in ``mode`` gives them."""
    return {s: as_answered(a, mode) for s, a in _subset(stored["areas" if mode == "areas" else "probs"],
                                                         take).items()}


def verify(evidence: Evidence, suspect, alpha: float | None = None, max_queries: int | None = None,
           watermark: WatermarkRecord | None = None, key_statistic: str = "advantage") -> dict:
    """Ask ``suspect`` (``suspects.Suspect``) and return the result: per method the statistic, threshold,
    p-value, calibrated score and verdict, and the overall verdict.

    With a ``watermark`` record (``watermark.py``) its images are asked first, at most half of the query budget
    (all of them without a budget), and the rest of the budget goes to the evidence's sets; the watermark test
    counts as one more method in the Bonferroni split. ``key_statistic``: one of ``KEY_STATISTICS``."""
    budget = max_queries if max_queries is not None else getattr(suspect, "max_queries", None)
    marks = None
    if watermark is not None:
        if watermark.task != evidence.task:
            raise ModelLockError(f"watermark folder {watermark.folder.path}: records a {watermark.task} service; "
                                 f"the evidence is for {evidence.task}")
        n = len(watermark) if budget is None else min(len(watermark), budget // 2)
        marks = watermark_test(watermark, suspect, n, level=1.0)  # the verdict at the real level: ``decide``
        budget = None if budget is None else budget - n
    per_set, take = ask(evidence, suspect, budget)
    return decide(evidence, per_set, suspect.mode, take, alpha,
                  {"suspect": suspect.name, "kind": suspect.kind, "queries": int(suspect.queries)},
                  weight_similarity(evidence, suspect), marks, key_statistic)


def weight_similarity(evidence: Evidence, suspect) -> float | None:
    """The weights test's statistic for a white-box suspect (None: no weights, or none of the owner's shapes)."""
    model = getattr(suspect, "model", None)
    if model is None or not evidence.weights:
        return None
    w = evidence.meta["weights"]
    return similarity(evidence.weights, [tuple(x) for x in w["shapes"]], w["seed"], model)


def ask(evidence: Evidence, suspect, max_queries: int | None = None) -> tuple[dict, dict]:
    """The suspect's answers to the evidence's images (within ``max_queries``, default the suspect's own budget):
    ``(answers per set, indices asked per set)``."""
    budget = max_queries if max_queries is not None else getattr(suspect, "max_queries", None)
    take = _budget(evidence, budget)
    images = [im for s in SETS for im in evidence.images[s][take[s]]]
    answers = np.asarray(suspect.answer(images), dtype=np.float64)
    if answers.ndim != 2 or len(answers) != len(images):
        raise ModelLockError(f"{suspect.name}: {len(images)} images asked, answers of shape {answers.shape}")
    per_pixel = task_type(evidence.task).per_pixel
    if suspect.mode == "areas" and not per_pixel:
        raise ModelLockError(f"{suspect.name}: answers class areas (segmentation); the evidence is for {evidence.task}")
    if suspect.mode != "areas" and per_pixel and suspect.kind == "black-box":
        raise ModelLockError(f"{suspect.name}: answers classes per image; the evidence is for segmentation")
    per_set, start = {}, 0
    for s in SETS:
        per_set[s] = answers[start:start + len(take[s])]
        start += len(take[s])
    return per_set, take


def decide(evidence: Evidence, per_set: dict, mode: str, take: dict, alpha: float | None = None,
           about: dict | None = None, weights: float | None = None, watermark: dict | None = None,
           key_statistic: str = "advantage") -> dict:
    """The verdict on answers ``per_set`` of kind ``mode`` to the images ``take`` of each set (and, for a white-box
    suspect, its ``weights`` similarity; with ``watermark``, the counts of ``watermark.watermark_test``), the
    key-feature test with ``key_statistic`` (``KEY_STATISTICS``)."""
    if key_statistic not in KEY_STATISTICS:
        raise ModelLockError(f"key statistic {key_statistic!r}: not one of {', '.join(KEY_STATISTICS)}")
    alpha = float(alpha if alpha is not None else evidence.settings["alpha"])
    if not 0 < alpha < 1:
        raise ModelLockError(f"alpha must be in (0, 1), not {alpha!r}")
    if len(evidence.independent) < 3:
        raise ModelLockError("the evidence holds fewer than 3 independent models; build it again")
    owner = _answered(evidence.owner, mode, take)
    truth = evidence.truth[take["key_clean"]]
    ratio = strength_ratio(evidence, take["key_clean"])
    adjust = ratio if key_statistic == "adjusted" else None
    mine = distances(per_set, owner, truth, adjust)
    answered = [_answered(evidence.independent[i], mode, take) for i in range(len(evidence.independent))]
    nulls = [distances(a, owner, truth, adjust) for a in answered]
    floors = noise_floors(mode, len(truth), adjust or 1.0)
    null_floors = [{**floors, "key-response": response_noise(a)} for a in answered]
    floors["key-response"] = response_noise(per_set)
    null_values = {m: [n[m] for n in nulls] for m in mine}
    if weights is not None:  # white box: the weights test, its null from the independent models' weights
        mine["weights"] = -weights
        null_values["weights"] = [-x for x in evidence.meta["weights"]["independent"]]
        if len(null_values["weights"]) == len(nulls):
            for n, x in zip(nulls, null_values["weights"]):
                n["weights"] = x
    methods = [m for m in STATISTICS if m in mine and np.isfinite(mine[m])]  # key-feature: the owner's classes
    level = alpha / (len(methods) + (watermark is not None))
    result = {**(about or {}), "answers": mode, "images_per_set": {s: len(t) for s, t in take.items()},
              "alpha": alpha, "level": level, "independent_models": len(nulls), "methods": {},
              "not_applicable": {m: "the suspect's classes are not the owner's" for m in mine if m not in methods}}
    if weights is None:
        result["not_applicable"]["weights"] = "no weights of the owner's architecture (black box, or another one)"
    for m in methods:
        null = null_fit(null_values[m], floors.get(m, 0.0))
        p = p_value(mine[m], null)
        name, side = STATISTICS[m]
        name = "key advantage (adj.)" if m == "key-feature" and adjust is not None else name
        sign = 1.0 if side == "below" else -1.0
        result["methods"][m] = {"statistic": name, "value": sign * mine[m], "derived_if": side,
                                "threshold": sign * threshold(null, level), "p_value": p,
                                "score": z_score(mine[m], null), "independent_mean": sign * null[0],
                                "verdict": "derived" if p < level else "independent"}
    if "key-feature" in result["methods"]:
        result["methods"]["key-feature"].update(edit_strength_ratio=ratio, key_statistic=key_statistic)
    if watermark is not None:
        mark = decide_watermark(watermark["agreed"], watermark["asked"], watermark["independent_mean"], level)
        result["methods"]["watermark"] = {**mark, "records": watermark.get("records", mark["asked"])}
    result["verdict"] = "derived" if any(r["verdict"] == "derived" for r in result["methods"].values()) \
        else "independent"
    result["calibration_false_positives"] = _leave_one_out(nulls, [m for m in methods if m in nulls[0]], level,
                                                           null_floors)
    return result


def _leave_one_out(nulls: list[dict], methods: list[str], level: float, floors: list[dict] | None = None) -> int:
    """How many calibration models a null fitted on the others would call derived (a check of the FP rate);
    ``floors[i]``: the least spread per method when model ``i`` is the one judged."""
    called = 0
    if len(nulls) < 4:
        return 0
    for i, own in enumerate(nulls):
        rest = nulls[:i] + nulls[i + 1:]
        floor = floors[i] if floors else {}
        if any(p_value(own[m], null_fit([n[m] for n in rest], floor.get(m, 0.0))) < level for m in methods):
            called += 1
    return called


def format_result(r: dict) -> str:
    """The result as a few lines of text for the terminal."""
    lines = [f"suspect: {r['suspect']} ({r['kind']}, answers: {r['answers']}, {r['queries']} queries)",
             f"{'method':<12} {'statistic':<21} {'value':>8} {'derived if':>12} {'p-value':>9} {'score':>7}  verdict"]
    for m, x in r["methods"].items():
        bound = f"{'<' if x['derived_if'] == 'below' else '>'} {x['threshold']:.4f}"
        lines.append(f"{m:<12} {x['statistic']:<21} {x['value']:>8.4f} {bound:>12} {x['p_value']:>9.2e} "
                     f"{x['score']:>7.2f}  {x['verdict']}")
    if "watermark" in r["methods"]:
        w = r["methods"]["watermark"]
        lines.append(f"{'':<12} {w['agreed']}/{w['asked']} of the {w['records']} watermarked queries answered with "
                     f"their watermark class (chance: at most {w['independent_mean']:.3f} each)")
    for m, why in r.get("not_applicable", {}).items():
        lines.append(f"{m:<12} not applicable: {why}")
    lines.append(f"verdict: {r['verdict']} (derived when a method's p-value is under {r['level']:.2g} = alpha "
                 f"{r['alpha']:g} / {len(r['methods'])} methods: a false-positive rate of at most {r['alpha']:g} "
                 f"under the null of {r['independent_models']} independent models; "
                 f"{r['calibration_false_positives']}/{r['independent_models']} of them called derived "
                 "left out in turn)")
    return "\n".join(lines)
