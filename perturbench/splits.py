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

Test labels state what the fitted models saw. GEARS labels the test conditions *before* the
validation carve-out, so a ``combo_seen2`` condition may have a gene whose every condition went
to validation (GEARS has this flaw). Here a test condition's subgroup counts its genes targeted by
at least one **training** condition (validation is only for model selection): a combo is
``combo_seen{n}`` with n such genes, a single is ``unseen_single``. Carving validation only
removes training conditions, so a label can only move down (seen2 → seen1 → seen0). GEARS's
label is kept as ``Split.gears_test`` (``gears_subgroup`` in the manifest).

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
MANIFEST_FORMAT = "perturbench-split/2"
_MANIFEST_FIELDS = ("format", "dataset", "seed", "kind", "train", "val", "test", "gears_subgroup", "checksum")


class SplitError(PerturbenchError, ValueError):
    """An invalid split or manifest; the message names the file or the offending condition."""


@dataclass(frozen=True)
class Split:
    """A partition of perturbation conditions.

    ``test`` maps condition → subgroup by the genes of the training conditions (module
    docstring); ``gears_test`` the same conditions → GEARS's label, computed before the
    validation carve-out (defaults to ``test``).
    """

    seed: int
    kind: SplitKind
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: dict[str, str]
    gears_test: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(SplitKind):
            raise SplitError(f"split kind {self.kind!r} is not one of {get_args(SplitKind)}")
        if self.gears_test is None:
            object.__setattr__(self, "gears_test", dict(self.test))
        if set(self.gears_test) != set(self.test):
            raise SplitError("gears_subgroup must label exactly the test conditions")
        bad = sorted({g for g in (*self.test.values(), *self.gears_test.values()) if g not in SUBGROUPS})
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

    def relabelled(self) -> dict[str, int]:
        """Counts of test conditions whose label changed, keyed ``"<gears label>→<label>"``."""
        moves = Counter(f"{self.gears_test[c]}→{g}" for c, g in self.test.items() if self.gears_test[c] != g)
        return dict(sorted(moves.items()))

    def cell_counts(self) -> None:
        """Cells per part: None, a condition split assigns whole conditions (see ``CellSplit``)."""
        return None


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
    labels = training_labels(test, train)
    return Split(
        seed, kind, tuple(train), tuple(sorted(val_groups) if kept else ()), labels, dict(sorted(test.items()))
    )


def training_labels(test: Sequence[str] | dict[str, str], train: Sequence[str]) -> dict[str, str]:
    """Test condition → subgroup counting its genes targeted by some ``train`` condition.

    A two-gene condition with n such genes is ``combo_seen{n}``; a single is ``unseen_single``
    (a test single whose gene trained cannot arise from the simulation split; it is rejected).
    """
    trained = set(perturbed_genes(list(train)))
    labels = {}
    for cond in sorted(test):
        genes_of = targets(cond)
        n_seen = sum(g in trained for g in genes_of)
        if len(genes_of) == 1 and n_seen:
            raise SplitError(f"test single {cond!r} targets a gene of a training condition")
        labels[cond] = "unseen_single" if len(genes_of) == 1 else f"combo_seen{n_seen}"
    return labels


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
        "gears_subgroup": dict(sorted(split.gears_test.items())),
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


def checked_content(path: Path, raw: object, fields: Sequence[str], *, dataset: str | None, what: str) -> None:
    """Raise :class:`SplitError` naming ``path`` when ``raw`` lacks one of ``fields``, its checksum
    does not match its content, or ``dataset`` is given and differs (shared by every manifest kind)."""
    missing = [f for f in fields if not isinstance(raw, dict) or f not in raw]
    if missing:
        raise SplitError(f"{path}: {what} lacks field(s) {missing}")
    content = {k: v for k, v in raw.items() if k != "checksum"}
    if _checksum(content) != raw["checksum"]:
        raise SplitError(f"{path}: checksum mismatch (file edited or corrupted); regenerate the split")
    if dataset is not None and raw["dataset"] != dataset:
        raise SplitError(f"{path}: manifest is for dataset {raw['dataset']!r}, not {dataset!r}")


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
    if isinstance(raw, dict) and raw.get("format") not in (None, MANIFEST_FORMAT):
        raise SplitError(
            f"{path}: field 'format' is {raw['format']!r}, expected {MANIFEST_FORMAT!r} (an older manifest: "
            "its test labels predate the validation carve-out); delete it and rerun"
        )
    checked_content(path, raw, _MANIFEST_FIELDS, dataset=dataset, what="split manifest")
    try:
        return Split(
            int(raw["seed"]), raw["kind"], tuple(raw["train"]), tuple(raw["val"]), dict(raw["test"]),
            dict(raw["gears_subgroup"]),
        )
    except SplitError as err:
        raise SplitError(f"{path}: {err}") from None
