"""``Spread``: a quantity over independent trials (programming instances), the one summary of
trials that ``nmc verify``, ``nmc run`` and the report's runs on inputs share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class Spread:
    """Mean, standard deviation, minimum and maximum of a quantity over ``n`` trials."""

    mean: float
    std: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        v = np.asarray(list(values), dtype=np.float64)
        return cls(float(v.mean()), float(v.std()), float(v.min()), float(v.max()), int(v.size))

    def format(self, fmt: str) -> str:
        """``mean ± std [min, max]``, each number in format ``fmt`` (e.g. ``".3g"``, ``".2%"``)."""
        return f"{self.mean:{fmt}} ± {self.std:{fmt}} [{self.min:{fmt}}, {self.max:{fmt}}]"

    def to_dict(self) -> dict:
        """The JSON form of the report: keys mean, std, min, max, n."""
        return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max, "n": self.n}
