"""``results/{dataset}/calibration.tsv``: how well each run's σ works as an error bar of its mean.

One row per (featureset, model, seed, calibrated) over a run's test conditions × genes, from its
prediction file: ``calibrated = no`` uses the network's own log-variance (``layers['logvar_raw']``
when the run was calibrated, else ``layers['logvar']``), ``calibrated = yes`` the log-variance
calibrated on validation conditions (``layers['logvar']`` of a run that has ``logvar_raw``).
Columns: Gaussian NLL, coverage of the central 50% / 90% intervals μ ± zσ, Spearman ρ(σ, |y − μ|)
pooled over condition × gene values and ρ over conditions of RMS σ vs RMS error
(:func:`perturbench.report.analyses.calibration`). Runs without any log-variance give no rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from perturbench.data.io import atomic_path
from perturbench.data.store import load_dataset
from perturbench.models.base import Prediction
from perturbench.provenance import run_labels
from perturbench.report.analyses import calibration

COLUMNS = ["featureset", "model", "seed", "calibrated", "nll", "coverage50", "coverage90",
           "spearman_sigma_abs_error", "spearman_condition", "n"]


def calibration_rows(prediction_path: Path, data_root: Path) -> list[dict]:
    """Rows of one prediction file, labelled from its run record (``uns['run']``: featureset, seed,
    run name), with truths from ``<data_root>/{featureset}``; the file may lie anywhere."""
    pred = Prediction.read(prediction_path)
    labels = run_labels(pred.run, prediction_path)
    if pred.logvar is None or not pred.conditions:
        return []
    truth = load_dataset(Path(data_root) / labels.featureset, with_cells=False).expression(pred.conditions)
    versions = {"no": pred.logvar} if pred.logvar_raw is None else {"no": pred.logvar_raw, "yes": pred.logvar}
    key = {"featureset": labels.featureset, "model": labels.run, "seed": labels.seed}
    return [{**key, "calibrated": flag, **calibration(pred.mean, logvar, truth)} for flag, logvar in versions.items()]


def write_calibration_table(prediction_paths: list[Path], data_root: Path, out: Path) -> pd.DataFrame:
    """Rows of every prediction file (module docstring), written as a TSV atomically."""
    rows = [row for path in prediction_paths for row in calibration_rows(path, data_root)]
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return table
