"""Canonical perturbation condition names.

Everywhere in perturbench a condition is its target genes sorted and joined by ``+``
(``"CEBPE+ETS2"``); the unperturbed control is ``"ctrl"``. GEARS writes ``"A+ctrl"``,
``"ctrl+A"`` and ``"A+B"`` in screen order; :func:`canonical_condition` maps all of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from perturbench.errors import PerturbenchError

CTRL = "ctrl"
_GENE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:]*$")


class ConditionError(PerturbenchError, ValueError):
    """A condition name that cannot be parsed; the message quotes it and says where it came from."""


def canonical_condition(raw: str, *, where: str = "condition") -> str:
    """Return the canonical name of a GEARS- or user-style condition.

    ``"ctrl"`` → ``"ctrl"``; ``"A+ctrl"``/``"ctrl+A"``/``"A"`` → ``"A"``; ``"B+A"`` → ``"A+B"``.
    Raises :class:`ConditionError` for empty names, empty parts (``"A++B"``), ``"ctrl+ctrl"``,
    repeated genes and characters that are not gene-symbol characters.
    """
    if not isinstance(raw, str) or raw.strip() == "":
        raise ConditionError(f"{where}: empty condition name {raw!r}")
    text = raw.strip()
    if text == CTRL:
        return CTRL
    parts = text.split("+")
    if any(p.strip() == "" for p in parts):
        raise ConditionError(f"{where}: malformed condition {raw!r} (empty gene between '+')")
    genes = [p.strip() for p in parts if p.strip() != CTRL]
    if not genes:
        raise ConditionError(f"{where}: malformed condition {raw!r} (only 'ctrl' parts)")
    bad = [g for g in genes if not _GENE.match(g)]
    if bad:
        raise ConditionError(f"{where}: condition {raw!r} has invalid gene name(s) {bad}")
    if len(set(genes)) != len(genes):
        raise ConditionError(f"{where}: condition {raw!r} repeats a gene")
    return "+".join(sorted(genes))


def targets(condition: str) -> tuple[str, ...]:
    """Target genes of a canonical condition (empty tuple for ``ctrl``)."""
    return () if condition == CTRL else tuple(condition.split("+"))


def multi_hot(conditions: Sequence[str], genes: Sequence[str]) -> np.ndarray:
    """Design matrix X (n_conditions, n_genes): X[i, j] = 1 if ``genes[j]`` is a target of condition i.

    Targets not in ``genes`` are ignored (their columns do not exist). Shared by the linear
    baselines and the dual-stream model's ridge prior.
    """
    index = {g: j for j, g in enumerate(genes)}
    x = np.zeros((len(conditions), len(genes)))
    for i, cond in enumerate(conditions):
        for gene in targets(cond):
            if gene in index:
                x[i, index[gene]] = 1.0
    return x


def perturbed_genes(conditions: Iterable[str]) -> list[str]:
    """Sorted union of the target genes of ``conditions``."""
    return sorted({g for c in conditions for g in targets(c)})
