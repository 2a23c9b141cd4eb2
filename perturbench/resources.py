"""Resource requests (``mem_mb``, ``runtime``) of the workflow's rules, sized from the dataset.

Snakemake calls these when it builds the DAG (``workflow/rules/common.smk`` wraps them per rule),
so ``--cores 8 --resources mem_mb=...`` on one node and SLURM requests follow the data:

- jobs that load the cells (prepare, cell_split_data, fits of models with the ``reads_cells``
  trait) ask for ``base + per_cell_mib × C`` MiB, C = MiB of the prepared ``cells.h5ad`` (CSR
  float32, about its size in memory); before that file exists C is the size of a ``cells``
  source's h5ad, or :data:`BYTES_PER_ENTRY` bytes per cell × gene of the simulation preset or
  the GEARS remote;
- pseudobulk-only jobs (closed-form baselines, evaluations, feature sets) ask for
  ``base + per_pb_mib × P``, P = MiB of the prepared ``pseudobulk.h5ad``;
- ``runtime`` (minutes) is ``base + per_gib × C / 1024`` for jobs that load cells, else ``base``.

The factors live next to each rule; they come from the ``k562`` preset's measured costs
(``perturbench bench workflow_scale``; README, "What the full benchmark costs").
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BYTES_PER_ENTRY = 3.2  # CSR float32 value + int32 index at the k562 preset's ~40% density
SIMULATOR_BYTES_PER_ENTRY = 4.3  # the simulator's peak (k562 preset: ~3.3 GB)
ARCHIVE_FACTOR = 3  # a compressed GEARS .archive holds ~3× its size in h5ad
#: cells × genes of the GEARS remotes (approximate), for sizing jobs before the files exist
REMOTE_ENTRIES = {
    "norman": 91_000 * 5_000,
    "replogle_k562_essential": 160_000 * 5_000,
    "replogle_rpe1_essential": 160_000 * 5_000,
}


def file_mib(path: str | os.PathLike[str]) -> float:
    """Size of ``path`` in MiB; 0 when it does not exist (yet)."""
    return os.path.getsize(path) / 2**20 if os.path.exists(path) else 0.0


def simulation_config(spec: dict[str, Any]) -> Any:
    """The :class:`~perturbench.data.simulate.SimulationConfig` of a ``source: simulated`` entry."""
    from perturbench.data.simulate import SIMULATION_PRESETS

    preset = SIMULATION_PRESETS[spec.get("preset", "demo")]
    return dataclasses.replace(preset, **spec.get("params", {}))


def cells_mib(config: dict[str, Any], dataset: str, *, root: Path = Path(".")) -> float:
    """MiB of ``dataset``'s prepared cells, or the estimate of the module docstring."""
    size = file_mib(root / "results" / dataset / "prepared" / "cells.h5ad")
    if size:
        return size
    spec = config["datasets"][dataset]
    if spec["source"] == "simulated":
        cfg = simulation_config(spec)
        return BYTES_PER_ENTRY * cfg.n_cells * cfg.n_genes / 2**20
    if spec["source"] == "cells":
        return file_mib(root / spec["path"])
    return BYTES_PER_ENTRY * REMOTE_ENTRIES.get(spec.get("remote"), 0) / 2**20


def reads_cells(config: dict[str, Any], run: str | None) -> bool:
    """Whether fitting run ``run`` loads the cells (None: a job that fits nothing, e.g. evaluate)."""
    from perturbench.models.registry import model_spec
    from perturbench.workflow import model_runs

    runs = model_runs(config)
    return run is not None and run in runs and model_spec(runs[run]["model"]).reads_cells


def job_mem_mb(config: dict[str, Any], dataset: str, run: str | None, *, base: float, per_cell_mib: float,
               per_pb_mib: float = 4.0, root: Path = Path(".")) -> int:
    """``mem_mb`` of a fit (``run``) or evaluate (``run=None``) job (module docstring)."""
    if reads_cells(config, run):
        return int(base + per_cell_mib * cells_mib(config, dataset, root=root))
    return int(base + per_pb_mib * file_mib(root / "results" / dataset / "prepared" / "pseudobulk.h5ad"))


def job_runtime(config: dict[str, Any], dataset: str, run: str | None, *, base: float, per_gib: float,
                root: Path = Path(".")) -> int:
    """``runtime`` (minutes) of a fit or evaluate job (module docstring)."""
    extra = per_gib * cells_mib(config, dataset, root=root) / 1024 if reads_cells(config, run) else 0.0
    return int(base + extra)


def input_mem_mb(paths: Iterable[str | os.PathLike[str]], *, base: float, factor: float) -> int:
    """``base + factor ×`` MiB of ``paths`` (a compressed ``.archive`` counts :data:`ARCHIVE_FACTOR`×)."""
    total = sum(file_mib(p) * (ARCHIVE_FACTOR if str(p).endswith(".archive") else 1) for p in paths)
    return int(base + factor * total)


def simulate_mem_mb(config: dict[str, Any], dataset: str, *, base: float = 1000) -> int:
    """``mem_mb`` of the simulator: ``base`` + :data:`SIMULATOR_BYTES_PER_ENTRY` per cell × gene."""
    cfg = simulation_config(config["datasets"][dataset])
    return int(base + SIMULATOR_BYTES_PER_ENTRY * cfg.n_cells * cfg.n_genes / 2**20)
