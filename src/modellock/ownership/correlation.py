"""Sample correlation (SAC, Guan et al., NeurIPS 2022): a model's fingerprint is how its outputs on a fixed set
of samples relate to each other, not the outputs themselves.

For outputs ``P`` (``N x K`` per-image class distributions) the correlation matrix ``C(P)`` holds the cosine
similarity of every pair of samples' centred log-probabilities (the logits up to a constant per sample). Two
models are compared by the mean absolute difference of their matrices over the pairs (SAC's correlation
distance, here on cosines in [-1, 1]): derived models keep the pairwise structure of their source, even with
another head or another set of classes (``C`` is ``N x N`` whatever ``K`` is).

Black-box suspects answer with what their service gives; ``as_answered`` turns full distributions into the
same kind of answer (the top class alone, the top k), so a suspect is always compared with owner and
independent outputs of its own kind.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-4  # probabilities below this are floored: float noise in tiny probabilities is not a fingerprint
LABEL_SMOOTHING = 0.01  # a label-only answer: this much mass on every other class (SAC's smoothed one-hot)


def answer_kind(mode: str) -> tuple[str, int | None]:
    """``("probs"|"areas"|"label", None)`` or ``("top", k)`` from a mode name (``top-3``)."""
    if mode.startswith("top-"):
        return "top", int(mode[4:])
    return mode, None


def as_answered(probs: np.ndarray, mode: str) -> np.ndarray:
    """Full distributions ``probs`` (N x K) as a suspect answering in ``mode`` gives them: ``probs`` and
    ``areas`` unchanged, ``label`` the top class alone (smoothed one-hot), ``top-k`` the k largest probabilities
    with the rest of the mass spread evenly over the other classes."""
    kind, k = answer_kind(mode)
    p = np.asarray(probs, dtype=np.float64)
    if kind in ("probs", "areas") or p.shape[1] <= 1:
        return p
    if kind == "label":
        return label_answers(p.argmax(1), p.shape[1])
    k = min(int(k), p.shape[1])
    top = np.argsort(-p, axis=1)[:, :k]
    return top_answers(top, np.take_along_axis(p, top, 1), p.shape[1])


def label_answers(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Label-only answers as distributions: ``1 - s`` on the label, ``s / (K - 1)`` elsewhere."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full((len(labels), num_classes), LABEL_SMOOTHING / max(num_classes - 1, 1))
    out[np.arange(len(labels)), labels] = 1.0 - LABEL_SMOOTHING
    return out


def top_answers(indices: np.ndarray, values: np.ndarray, num_classes: int) -> np.ndarray:
    """Top-k answers (``indices``, ``values``: N x k) as distributions: the rest of the mass spread evenly."""
    indices, values = np.asarray(indices, dtype=np.int64), np.clip(np.asarray(values, dtype=np.float64), 0, 1)
    n, k = indices.shape
    rest = np.clip(1.0 - values.sum(1), 0.0, 1.0) / max(num_classes - k, 1)
    out = np.repeat(rest[:, None], num_classes, axis=1)
    np.put_along_axis(out, indices, values, 1)
    return out


def centred_log(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities floored at ``EPS``, centred per sample, scaled to unit length."""
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0))
    z -= z.mean(1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norm > 0, norm, 1.0)


def correlation_matrix(probs: np.ndarray) -> np.ndarray:
    """``C[i, j]``: the cosine of samples i and j's centred log-probabilities (N x N)."""
    z = centred_log(probs)
    return z @ z.T


def correlation_distance(a: np.ndarray, b: np.ndarray) -> float:
    """SAC's distance: the mean absolute difference of two models' correlation matrices over pairs i != j."""
    ca, cb = correlation_matrix(a), correlation_matrix(b)
    n = len(ca)
    if n < 2:
        return float("nan")
    off = ~np.eye(n, dtype=bool)
    return float(np.abs(ca - cb)[off].mean())
