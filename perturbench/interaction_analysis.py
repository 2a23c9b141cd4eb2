"""Genetic-interaction analysis of one dataset's model runs, on objects (files: :mod:`perturbench.pipeline`).

- truth side: :func:`perturbench.interactions.gi_table` of every measured double
  (Δ = pseudobulk − control), with distance correlations;
- model side: the same on each run's predicted doubles Δ̂_AB, regressed on the *measured* singles;
- noise level of double k's deviation from additivity: ν_k = √(s_AB² + s_A² + s_B²), s_j the
  RMS over genes of the standard error of condition j's mean, from split halves a, b of its cells
  (n_a + n_b = n): s_j² = (1/G) Σ_g (a_g − b_g)² · n_a n_b / n², or from a pseudobulk table's
  replicate layers. Without either the noise is unknown and ν_k = the median true deviation over
  the dataset's doubles (``noise_source`` ``median``: the upper half of the doubles interact);
- metrics per test subgroup and ``all`` (:func:`perturbench.interaction_metrics.interaction_metrics`),
  plus recall per planted interaction type when the dataset is simulated.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from perturbench.data.conditions import targets
from perturbench.data.contract import PerturbDataset
from perturbench.evaluate import ALL_SUBGROUP, split_half_means
from perturbench.interaction_metrics import class_recall, detection_curve, interacting, interaction_metrics
from perturbench.interactions import GIConfig, gi_table
from perturbench.models.base import Prediction

TRUTH = "truth"


def measured_deltas(ds: PerturbDataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(singles gene → Δ, doubles condition → Δ) of the measured pseudobulk, Δ = x − control."""
    conds = ds.conditions
    delta = ds.expression(conds) - ds.ctrl
    singles = {c: delta[i] for i, c in enumerate(conds) if len(targets(c)) == 1}
    doubles = {c: delta[i] for i, c in enumerate(conds) if len(targets(c)) == 2}
    return singles, doubles


def condition_noise(ds: PerturbDataset, conditions: list[str], *, seed: int = 0) -> dict[str, float] | None:
    """s_j per condition from split halves of its cells (module docstring), else from the
    pseudobulk's replicate layers (halves of unknown size, taken as equal: s_j² = mean (a − b)² / 4);
    None without either."""
    layers = ds.pseudobulk.layers
    if ds.cells is None and "replicate1" in layers and "replicate2" in layers:
        rows = ds.pseudobulk.obs_names.get_indexer(conditions)
        diff = np.asarray(layers["replicate1"])[rows] - np.asarray(layers["replicate2"])[rows]
        return dict(zip(conditions, np.sqrt(np.mean(diff**2, axis=1) / 4).tolist()))
    if ds.cells is None:
        return None
    labels = ds.cells.obs["condition"].astype(str).to_numpy()
    out = {}
    for cond in conditions:
        idx = np.flatnonzero(labels == cond)
        if idx.size < 2:
            out[cond] = float("nan")
            continue
        a, b = split_half_means(ds.cells.X, idx, seed=seed, key=cond)
        n_a = idx.size // 2
        out[cond] = float(np.sqrt(np.mean((a - b) ** 2) * n_a * (idx.size - n_a) / idx.size**2))
    return out


def pair_noise(truth: pd.DataFrame, cond_noise: Mapping[str, float] | None) -> tuple[pd.Series, str]:
    """ν_k per double of ``truth`` (indexed by condition) and the noise source (``split_half`` / ``median``)."""
    if cond_noise is None:
        return pd.Series(float(truth["deviation"].median()), index=truth.index), "median"
    nu = [np.sqrt(cond_noise[c] ** 2 + cond_noise[a] ** 2 + cond_noise[b] ** 2)
          for c, a, b in zip(truth.index, truth["gene_a"], truth["gene_b"])]
    return pd.Series(nu, index=truth.index, dtype=np.float64), "split_half"


def truth_table(ds: PerturbDataset, cfg: GIConfig) -> pd.DataFrame:
    """Truth-side GI table of every measured double, indexed by condition, with ``noise`` and
    ``interacting`` columns and the ``noise_source`` in ``attrs``."""
    singles, doubles = measured_deltas(ds)
    table = gi_table(singles, doubles, cfg=cfg).set_index("condition")
    needed = sorted(set(table.index) | set(table["gene_a"]) | set(table["gene_b"]))
    noise, source = pair_noise(table, condition_noise(ds, needed) if len(table) else None)
    table["noise"] = noise
    table["interacting"] = interacting(table["deviation"], table["noise"], cfg.noise_factor)
    table.attrs["noise_source"] = source
    return table


def model_table(ds: PerturbDataset, prediction: Prediction, cfg: GIConfig) -> pd.DataFrame:
    """GI table of a run's predicted doubles on the measured singles, indexed by condition."""
    if list(prediction.genes) != list(ds.genes):
        raise ValueError(f"model {prediction.model!r}: predicted genes differ from dataset {ds.name!r} genes")
    singles, _ = measured_deltas(ds)
    pred = {c: prediction.mean[i] - ds.ctrl for i, c in enumerate(prediction.conditions) if len(targets(c)) == 2}
    return gi_table(singles, pred, cfg=cfg, with_dcor=False).set_index("condition")


def run_metrics(
    truth: pd.DataFrame, pred: pd.DataFrame, subgroups: Mapping[str, str], *, cfg: GIConfig,
    planted: pd.Series | None = None,
) -> list[tuple[str, str, float]]:
    """(subgroup, metric, value) rows of one run: every test subgroup with doubles, and ``all``."""
    test = [c for c in pred.index if c in subgroups and c in truth.index]
    groups = {ALL_SUBGROUP: test}
    for cond in test:
        groups.setdefault(subgroups[cond], []).append(cond)
    rows = []
    for name, conds in sorted(groups.items()):
        values = interaction_metrics(truth.loc[conds], pred.loc[conds], truth["noise"], cfg=cfg)
        if planted is not None:
            values |= class_recall(pred.loc[conds, "gi_class"], planted)
        rows += [(name, metric, value) for metric, value in values.items()]
    return rows


def run_curve(truth: pd.DataFrame, pred: pd.DataFrame, test: list[str]) -> pd.DataFrame:
    """Detection curve of one run over its test doubles (columns n_called, tpr, fdp)."""
    conds = [c for c in pred.index if c in test and c in truth.index]
    return detection_curve(truth.loc[conds, "interacting"].to_numpy(), pred.loc[conds, "deviation"].to_numpy())


def read_planted(path: str | Path) -> pd.Series:
    """The simulator's planted interaction type per canonical double, from ``uns['interactions']``."""
    import anndata as ad

    raw = ad.read_h5ad(path, backed="r")
    try:
        table = raw.uns.get("interactions")
    finally:
        raw.file.close()
    if table is None:
        raise ValueError(f"{path}: uns['interactions'] missing (not a simulated dataset?)")
    return pd.Series([str(t) for t in table["type"]], index=[str(c) for c in table["condition"]], name="planted")


def truth_rows(truth: pd.DataFrame, planted: pd.Series | None) -> list[tuple[str, str, float]]:
    """(subgroup ``all``, metric, value) rows of the truth side: counts and recall per planted type."""
    values = {"n_doubles": float(len(truth)), "n_interacting": float(truth["interacting"].sum())}
    values |= {f"n_{cls}": float((truth["gi_class"] == cls).sum()) for cls in sorted(set(truth["gi_class"]))}
    if planted is not None:
        values |= class_recall(truth["gi_class"], planted)
    return [(ALL_SUBGROUP, metric, value) for metric, value in values.items()]

