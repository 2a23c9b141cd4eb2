"""Train / validation / test splits of perturbation conditions (GEARS "simulation" split).

Test subgroups (Roohani et al. 2023, GEARS ``DataSplitter.get_simulation_split``):

- ``unseen_single``: single-gene conditions whose gene is not *seen*;
- ``combo_seen0`` / ``combo_seen1``: two-gene conditions with 0 / 1 seen genes;
- ``combo_seen2``: a ``combo_seen2_test_fraction`` share of the two-gene conditions whose genes
  are both seen; the rest of them train.

A ``seen_gene_fraction`` share (rounded down) of the perturbed genes is drawn as seen; training
conditions are the seen genes' singles plus the training seen-2 combos. Validation conditions are
carved from the training set by the same procedure with fractions ``1 − val_fraction`` (GEARS
uses 0.9), so validation also holds unseen-gene singles and combos of the training genes. With
``val_fraction`` > 0 at least one training gene is unseen by that draw, so validation is never
empty — unless carving it would leave no training condition; then validation stays empty.

Differences from GEARS: draws come from ``numpy.random.default_rng(seed)`` (one generator for
the test and validation draws) over the sorted genes and conditions, so a split depends only on
the set of condition names and the seed, not on their order — GEARS's partition for the same seed
differs. Conditions of more than two genes are rejected. Single-gene datasets get the
``"single"`` kind (GEARS ``simulation_single``): only ``unseen_single``.

The manifest (:func:`write_manifest`) depends only on condition names, so one manifest serves
every feature set of a dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from perturbench.errors import PerturbenchError
from perturbench.data.conditions import CTRL, ConditionError, canonical_condition, perturbed_genes, targets
from perturbench.data.io import write_text_atomic

SplitKind = Literal["simulation", "single"]
Subgroup = Literal["unseen_single", "combo_seen0", "combo_seen1", "combo_seen2"]
SUBGROUPS: tuple[str, ...] = get_args(Subgroup)
MANIFEST_FORMAT = "perturbench-split/1"
_MANIFEST_FIELDS = ("format", "dataset", "seed", "kind", "train", "val", "test", "checksum")


class SplitError(PerturbenchError, ValueError):
    """An invalid split or manifest; the message names the file or the offending condition."""


@dataclass(frozen=True)
class Split:
    """A partition of perturbation conditions; ``test`` maps condition → subgroup."""

    seed: int
    kind: SplitKind
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: dict[str, str]

    def __post_init__(self) -> None:
        if self.kind not in get_args(SplitKind):
            raise SplitError(f"split kind {self.kind!r} is not one of {get_args(SplitKind)}")
        bad = sorted({g for g in self.test.values() if g not in SUBGROUPS})
        if bad:
            raise SplitError(f"unknown test subgroup(s) {bad}; expected {SUBGROUPS}")
        parts = {"train": set(self.train), "val": set(self.val), "test": set(self.test)}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = sorted(parts[a] & parts[b])
            if shared:
                raise SplitError(f"conditions in both {a} and {b}: {shared[:5]}")

    def subgroup(self, name: Subgroup) -> list[str]:
        """Sorted test conditions of subgroup ``name``."""
        return sorted(c for c, g in self.test.items() if g == name)


def make_split(
    conditions: Sequence[str],
    *,
    seed: int,
    kind: SplitKind | None = None,
    seen_gene_fraction: float = 0.75,
    combo_seen2_test_fraction: float = 0.25,
    val_fraction: float = 0.1,
) -> Split:
    """GEARS simulation split of ``conditions`` (canonical names; ``ctrl`` is ignored).

    ``kind=None`` picks ``"simulation"`` when any condition has two genes, else ``"single"``.
    Raises :class:`SplitError` for non-canonical, repeated or > 2-gene conditions, a ``"single"``
    split of combos, fractions outside [0, 1], or a split that leaves no training condition.
    """
    perts = _checked_conditions(conditions)
    has_combos = any(len(targets(c)) == 2 for c in perts)
    kind = kind or ("simulation" if has_combos else "single")
    if kind == "single" and has_combos:
        example = next(c for c in perts if len(targets(c)) == 2)
        raise SplitError(f"split kind 'single' but conditions include combinations such as {example!r}")
    for name, value in (
        ("seen_gene_fraction", seen_gene_fraction),
        ("combo_seen2_test_fraction", combo_seen2_test_fraction),
        ("val_fraction", val_fraction),
    ):
        if not 0.0 <= value <= 1.0:
            raise SplitError(f"{name} must lie in [0, 1], got {value!r}")
    rng = np.random.default_rng(seed)
    train, test = _simulation_partition(perts, rng, seen_gene_fraction, combo_seen2_test_fraction)
    if not train:
        raise SplitError(f"seed {seed}: the split of {len(perts)} conditions leaves no training condition")
    kept, val_groups = _simulation_partition(train, rng, 1.0 - val_fraction, val_fraction)
    if kept:
        train = kept
    return Split(seed, kind, tuple(train), tuple(sorted(val_groups) if kept else ()), dict(sorted(test.items())))


def _checked_conditions(conditions: Sequence[str]) -> list[str]:
    """Sorted non-ctrl conditions; raises SplitError on non-canonical, repeated or > 2-gene names."""
    perts = [c for c in conditions if c != CTRL]
    for c in perts:
        try:
            canonical = canonical_condition(c, where="make_split")
        except ConditionError as err:
            raise SplitError(str(err)) from None
        if canonical != c:
            raise SplitError(f"condition {c!r} is not canonical (expected {canonical!r})")
        if len(targets(c)) > 2:
            raise SplitError(f"condition {c!r} perturbs more than two genes; splits support 1 or 2")
    if len(set(perts)) != len(perts):
        dups = sorted(c for c, n in Counter(perts).items() if n > 1)
        raise SplitError(f"repeated conditions {dups[:5]}")
    return sorted(perts)


def _count(n: int, fraction: float) -> int:
    """int(n · fraction) as GEARS rounds it, guarded against float error (0.9 · 10 → 9)."""
    return int(np.floor(n * fraction + 1e-9))


def _simulation_partition(
    perts: Sequence[str], rng: np.random.Generator, seen_fraction: float, seen2_test_fraction: float
) -> tuple[list[str], dict[str, str]]:
    """(training conditions, held-out condition → subgroup) for sorted ``perts``."""
    genes = perturbed_genes(perts)
    seen_idx = rng.choice(len(genes), size=_count(len(genes), seen_fraction), replace=False)
    seen = {genes[i] for i in seen_idx}
    train, held, seen2 = [], {}, []
    for cond in perts:
        genes_of = targets(cond)
        n_seen = sum(g in seen for g in genes_of)
        if len(genes_of) == 1 and n_seen:
            train.append(cond)
        elif len(genes_of) == 1:
            held[cond] = "unseen_single"
        elif n_seen == 2:
            seen2.append(cond)
        else:
            held[cond] = f"combo_seen{n_seen}"
    n_train2 = _count(len(seen2), 1.0 - seen2_test_fraction)
    train2 = {seen2[i] for i in rng.choice(len(seen2), size=n_train2, replace=False)}
    train.extend(c for c in seen2 if c in train2)
    held.update({c: "combo_seen2" for c in seen2 if c not in train2})
    return sorted(train), held


# -- manifest -------------------------------------------------------------------------------
def _content(split: Split, dataset: str) -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "dataset": dataset,
        "seed": int(split.seed),
        "kind": split.kind,
        "train": sorted(split.train),
        "val": sorted(split.val),
        "test": dict(sorted(split.test.items())),
    }


def _checksum(content: dict) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of the manifest content."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_manifest(split: Split, path: str | Path, *, dataset: str) -> None:
    """Write ``split`` as JSON (sorted keys and conditions, plus ``checksum``) atomically."""
    content = _content(split, dataset)
    text = json.dumps({**content, "checksum": _checksum(content)}, sort_keys=True, indent=1)
    write_text_atomic(path, text + "\n")


def read_manifest(path: str | Path, *, dataset: str | None = None) -> Split:
    """Read a manifest written by :func:`write_manifest`.

    Raises :class:`SplitError` naming ``path`` when the file is not JSON, a field is missing,
    the checksum does not match the content, or ``dataset`` is given and differs.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SplitError(f"{path}: cannot read split manifest ({err})") from None
    missing = [f for f in _MANIFEST_FIELDS if not isinstance(raw, dict) or f not in raw]
    if missing:
        raise SplitError(f"{path}: split manifest lacks field(s) {missing}")
    content = {k: v for k, v in raw.items() if k != "checksum"}
    if _checksum(content) != raw["checksum"]:
        raise SplitError(f"{path}: checksum mismatch (file edited or corrupted); regenerate the split")
    if raw["format"] != MANIFEST_FORMAT:
        raise SplitError(f"{path}: field 'format' is {raw['format']!r}, expected {MANIFEST_FORMAT!r}")
    if dataset is not None and raw["dataset"] != dataset:
        raise SplitError(f"{path}: manifest is for dataset {raw['dataset']!r}, not {dataset!r}")
    try:
        return Split(int(raw["seed"]), raw["kind"], tuple(raw["train"]), tuple(raw["val"]), dict(raw["test"]))
    except SplitError as err:
        raise SplitError(f"{path}: {err}") from None
