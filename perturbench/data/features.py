"""Feature sets: which measured genes a benchmark run evaluates and trains on.

``FEATURE_SETS`` maps a name to a regular expression; genes whose symbol matches it (Python
``re.fullmatch``, case-sensitive HGNC symbols) are removed:

- ``full``: empty pattern, nothing removed;
- ``no_mt``: mitochondrially encoded genes, ``MT-…`` (``MT-CO1``, ``MT-ND4``);
- ``no_mt_ribo``: those plus cytosolic ribosomal-protein genes: ``RPL``/``RPS`` + a number with
  an optional ``A``/``L``/``AL``/``X``/``Y`` and number suffix (``RPL13``, ``RPL13A``,
  ``RPL22L1``, ``RPS4X``, ``RPS4Y1``, ``RPL36AL``, ``RPL3L``), the acidic stalk proteins
  ``RPLP0``/``RPLP1``/``RPLP2`` and ``RPSA``.

Deliberately kept: mitochondrial ribosomal proteins (``MRPL…``/``MRPS…``, nuclear genes),
the ribosomal S6 kinases (``RPS6KA1``, ``RPS6KB1``: a plain ``^RP[SL]\\d`` prefix would drop
them) and ribosomal-protein pseudogenes such as ``RPL13AP5``.

:func:`apply_feature_set` re-derives DE genes from ``uns['de_ranking']`` when present, so each
feature set still has (up to) 20 DE genes per condition.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

from perturbench.data.contract import PerturbDataset
from perturbench.data.de import nondropout_de

_MT = r"MT-.+"
_RIBO = r"RP[SL]\d+(?:A|L|AL|X|Y)?\d*|RPLP\d|RPSA"

FEATURE_SETS: dict[str, str] = {
    "full": "",
    "no_mt": _MT,
    "no_mt_ribo": f"{_MT}|{_RIBO}",
}
FeatureSet = Literal["full", "no_mt", "no_mt_ribo"]
_N_EXAMPLES = 10


def removed_genes(genes: list[str], featureset: FeatureSet) -> list[str]:
    """Genes of ``genes`` (in order) that ``featureset`` removes."""
    if featureset not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {featureset!r}; valid: {sorted(FEATURE_SETS)}")
    pattern = FEATURE_SETS[featureset]
    if not pattern:
        return []
    regex = re.compile(pattern)
    return [g for g in genes if regex.fullmatch(g)]


def _rederive_de(ds: PerturbDataset, ranking: dict[str, list[str]], n: int) -> None:
    """Replace the DE lists in ``ds.pseudobulk.uns`` (``ds`` must be a fresh copy) by ``ranking``'s."""
    uns = ds.pseudobulk.uns
    uns["de_ranking"] = ranking
    uns["de20"] = {c: g[:n] for c, g in ranking.items()}
    if ds.cells is not None and "de20_nondropout" in uns:
        uns["de20_nondropout"] = nondropout_de(ds.cells, ranking, n=n)


def apply_feature_set(
    ds: PerturbDataset, featureset: FeatureSet, *, n: int = 20
) -> tuple[PerturbDataset, dict]:
    """Restrict ``ds`` to the genes ``featureset`` keeps; return it and a record.

    DE lists: with ``uns['de_ranking']`` they are re-derived (first ``n`` kept genes of each
    ranking; non-dropout lists again by the GEARS rule), otherwise the existing lists are
    filtered (and may then hold fewer than ``n`` genes). The record
    ``{'featureset', 'n_genes', 'n_removed', 'removed_examples'}`` is also stored in
    ``pseudobulk.uns['removed_genes']``. ``ds`` is not modified.
    """
    removed = removed_genes(ds.genes, featureset)
    gone = set(removed)
    if removed:
        out = ds.select_genes([g for g in ds.genes if g not in gone])
    else:
        out = dataclasses.replace(ds, pseudobulk=ds.pseudobulk.copy())
    ranking = ds.de_genes("de_ranking")
    if removed and ranking:
        _rederive_de(out, {c: [g for g in genes if g not in gone] for c, genes in ranking.items()}, n)
    record = {
        "featureset": featureset,
        "n_genes": len(out.genes),
        "n_removed": len(removed),
        "removed_examples": removed[:_N_EXAMPLES],
    }
    out.pseudobulk.uns["removed_genes"] = record
    meta = dict(out.meta)
    if "targets_missing_from_genes" in meta:
        meta["targets_missing_from_genes"] = out.targets_missing_from_genes()
    return dataclasses.replace(out, meta=meta), record
