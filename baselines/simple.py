"""Control baselines: predict control, the mean perturbation, or the sum of single effects.

All baselines share :class:`BaselineModel`: ``fit`` stores the genes and the control profile
c and calls ``_fit(conditions, deltas)`` with the training deltas Δ = y − c (ctrl row excluded);
``predict`` returns c + ``_predict_deltas(conditions)``. Predictions are on the truth's scale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from perturbench.errors import PerturbenchError
from perturbench.data.conditions import ConditionError, canonical_condition, multi_hot, targets
from perturbench.data.contract import PerturbDataset
from perturbench.models.base import FitContext, Prediction


class BaselineError(PerturbenchError, ValueError):
    """A baseline used wrongly (no training perturbations, predict before fit, bad setting)."""


@dataclass(frozen=True)
class NoParams:
    """Hyper-parameters of a baseline that has none."""


class BaselineModel(ABC):
    """Shared plumbing of the closed-form baselines (see module docstring)."""

    name: ClassVar[str]
    Config: ClassVar[type] = NoParams

    def __init__(self, **params: Any) -> None:
        self.config = self.Config(**params)
        self.genes: list[str] | None = None
        self.ctrl: np.ndarray | None = None

    def fit(self, train: PerturbDataset, *, context: FitContext) -> Self:
        self.genes = train.genes
        self.ctrl = train.ctrl
        conditions = train.conditions
        deltas = train.expression(conditions) - self.ctrl  # (n_conditions, n_genes)
        self._fit(conditions, deltas, train=train, context=context)
        return self

    def predict(self, conditions: Sequence[str]) -> Prediction:
        if self.genes is None or self.ctrl is None:
            raise BaselineError(f"{self.name}: predict() called before fit()")
        conditions = [_canonical(c, self.name) for c in conditions]
        deltas = self._predict_deltas(conditions).reshape(len(conditions), len(self.genes))
        return Prediction(self.name, conditions, list(self.genes), self.ctrl[None, :] + deltas)

    @abstractmethod
    def _fit(self, conditions: list[str], deltas: np.ndarray, *, train: PerturbDataset, context: FitContext) -> None:
        """Learn from training deltas (n_conditions, n_genes); ``conditions`` excludes ctrl."""

    @abstractmethod
    def _predict_deltas(self, conditions: list[str]) -> np.ndarray:
        """Predicted deltas, shape (len(conditions), n_genes)."""


def _canonical(condition: str, model: str) -> str:
    if canonical_condition(condition, where=f"{model}.predict") != condition:
        raise ConditionError(f"{model}.predict: condition {condition!r} is not canonical")
    return condition


def require_conditions(model: str, conditions: Sequence[str], train: PerturbDataset) -> None:
    """Raise :class:`BaselineError` when the training set has no perturbation conditions."""
    if not conditions:
        raise BaselineError(f"{model}: training set {train.source!r} has no perturbation conditions")


class ControlModel(BaselineModel):
    """ŷ = c: every condition is predicted to look like control."""

    name = "control"

    def _fit(self, conditions: list[str], deltas: np.ndarray, *, train: PerturbDataset, context: FitContext) -> None:
        """Nothing to learn beyond the control profile."""

    def _predict_deltas(self, conditions: list[str]) -> np.ndarray:
        assert self.genes is not None
        return np.zeros((len(conditions), len(self.genes)))


class MeanModel(BaselineModel):
    """ŷ = mean of the training perturbation pseudobulks, for every condition."""

    name = "mean"

    def _fit(self, conditions: list[str], deltas: np.ndarray, *, train: PerturbDataset, context: FitContext) -> None:
        require_conditions(self.name, conditions, train)
        self.mean_delta = deltas.mean(axis=0)

    def _predict_deltas(self, conditions: list[str]) -> np.ndarray:
        return np.tile(self.mean_delta, (len(conditions), 1))


class AdditiveModel(BaselineModel):
    """ŷ(A+B) = c + Δ_A + Δ_B with Δ_g the training single-gene delta of g.

    A target gene without a training single contributes 0 (so a fully unseen condition is
    predicted as control); a single whose own condition trained is predicted exactly.
    """

    name = "additive"

    def _fit(self, conditions: list[str], deltas: np.ndarray, *, train: PerturbDataset, context: FitContext) -> None:
        self.single_delta = {c: deltas[i] for i, c in enumerate(conditions) if len(targets(c)) == 1}

    def _predict_deltas(self, conditions: list[str]) -> np.ndarray:
        assert self.genes is not None
        out = np.zeros((len(conditions), len(self.genes)))
        for i, cond in enumerate(conditions):
            for gene in targets(cond):
                if gene in self.single_delta:
                    out[i] += self.single_delta[gene]
        return out
