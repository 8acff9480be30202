"""How rich a classification answer is: the owner's ``--output`` and ``--round``, and a request's ``top_k``.

Every class's probability is what distilling the unlocked model needs most; an owner can answer less:

- ``probs`` (the default): the class, its index and probability, and the ``top_k`` classes with their
  probabilities, ``top_k`` up to every class;
- ``top-k``: the same, ``top_k`` at most ``--top-k`` (3 by default);
- ``label``: the class and its index only.

``--round N`` rounds every probability to N decimal digits. A request without ``top_k`` gets ``--top-k``
classes, or every class when the model has fewer. Segmentation answers masks (a class per pixel) in every
mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from .limits import RequestError

MODES = ("label", "top-k", "probs")


@dataclass(frozen=True)
class Output:
    mode: str = "probs"
    top_k: int = 3
    digits: int | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"output must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, not {self.top_k!r}")
        if self.digits is not None and not 0 <= self.digits <= 15:
            raise ValueError(f"round must be from 0 to 15 digits, not {self.digits!r}")

    def most(self, num_classes: int) -> int:
        """The largest ``top_k`` a request may ask for."""
        return min(self.top_k, num_classes) if self.mode == "top-k" else num_classes

    def top_k_of(self, value, num_classes: int) -> int:
        """A request's ``top_k`` (None: the default, clamped to the class count); 422 when not usable."""
        most = self.most(num_classes)
        if value is None:
            return min(self.top_k, most)
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise RequestError(422, "top_k must be an integer") from None
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
            raise RequestError(422, f"top_k must be an integer from 1 to {most}")
        return value

    def shape(self, result: dict, top_k: int) -> dict:
        """A classification result as this output answers it (a segmentation result as it is)."""
        if "top" not in result:
            return result
        if self.mode == "label":
            return {"class": result["class"], "label": result["label"]}
        top = [dict(t, probability=self._round(t["probability"])) for t in result["top"][:top_k]]
        return {**result, "probability": self._round(result["probability"]), "top": top}

    def _round(self, p: float) -> float:
        return p if self.digits is None else round(p, self.digits)

    def describe(self, num_classes: int) -> dict:
        return {"mode": self.mode, "max_top_k": 0 if self.mode == "label" else self.most(num_classes),
                "round": self.digits}
