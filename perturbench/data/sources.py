"""The dataset-source registry: one loader + one registration line per ``datasets.<name>.source``.

A loader gets the dataset's name, its config entry and the files the workflow rule declared as
inputs (and a scratch folder), and returns a validated :class:`PerturbDataset`; it reads no
other file. Traits: ``cells`` (the source provides single cells, so cell-level models run on
it) and ``requires`` (config keys the entry must have, checked when the DAG is built).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perturbench.data.contract import PerturbDataset
from perturbench.errors import ConfigError

Loader = Callable[[str, dict[str, Any], list[Path], Path], PerturbDataset]


@dataclass(frozen=True)
class SourceSpec:
    """One dataset source: its loader and traits (module docstring)."""

    name: str
    loader: Loader
    cells: bool
    requires: tuple[str, ...] = ()


def _one_input(name: str, inputs: list[Path]) -> Path:
    if len(inputs) != 1:
        raise ConfigError(f"dataset {name!r}: expected exactly one input file, got {[str(p) for p in inputs]}")
    return Path(inputs[0])


def _gears(name: str, spec: dict[str, Any], inputs: list[Path], workdir: Path) -> PerturbDataset:
    """A GEARS archive (the download): extracted safely into ``workdir``, then its h5ad."""
    from perturbench.data.download import safe_extract
    from perturbench.data.gears_source import find_gears_h5ad, load_gears_dataset

    target = workdir / "extracted"
    if not target.exists():
        safe_extract(_one_input(name, inputs), target)
    return load_gears_dataset(find_gears_h5ad(target), name=name)


def _simulated(name: str, spec: dict[str, Any], inputs: list[Path], workdir: Path) -> PerturbDataset:
    """The simulator's GEARS-format h5ad (written by the ``simulate`` rule)."""
    from perturbench.data.gears_source import load_gears_dataset

    return load_gears_dataset(_one_input(name, inputs), name=name)


def _cells(name: str, spec: dict[str, Any], inputs: list[Path], workdir: Path) -> PerturbDataset:
    """An h5ad of log-normalized cells (``condition_key``, ``control_label``, ``keep``)."""
    from perturbench.data.cells import read_cells_h5ad

    return read_cells_h5ad(_one_input(name, inputs), name=name, condition_key=spec.get("condition_key", "condition"),
                           control_label=spec.get("control_label", "ctrl"), keep=spec.get("keep"))


def _pseudobulk(name: str, spec: dict[str, Any], inputs: list[Path], workdir: Path) -> PerturbDataset:
    """A condition × gene table (TSV, parquet or h5ad)."""
    from perturbench.data.tables import read_pseudobulk_table

    return read_pseudobulk_table(_one_input(name, inputs), name=name, delta_only=spec.get("delta_only"))


def _norman_npz(name: str, spec: dict[str, Any], inputs: list[Path], workdir: Path) -> PerturbDataset:
    """The shared Norman log fold-change archive (delta-only)."""
    from perturbench.data.tables import norman_npz_to_pseudobulk, read_pseudobulk_table

    converted = norman_npz_to_pseudobulk(_one_input(name, inputs), workdir / "norman_npz.h5ad")
    return read_pseudobulk_table(converted, name=name, delta_only=True)


SOURCES: dict[str, SourceSpec] = {
    spec.name: spec
    for spec in (
        SourceSpec("gears", _gears, cells=True, requires=("remote",)),
        SourceSpec("simulated", _simulated, cells=True),
        SourceSpec("cells", _cells, cells=True, requires=("path",)),
        SourceSpec("pseudobulk", _pseudobulk, cells=False, requires=("path",)),
        SourceSpec("norman_npz", _norman_npz, cells=False, requires=("path",)),
    )
}


def source_spec(dataset: str, spec: dict[str, Any]) -> SourceSpec:
    """The registered source of config entry ``datasets.<dataset>``; ConfigError naming the field."""
    source = spec.get("source")
    if source not in SOURCES:
        raise ConfigError(f"datasets.{dataset}.source: unknown source {source!r}; known: {', '.join(SOURCES)}")
    found = SOURCES[source]
    missing = [key for key in found.requires if key not in spec]
    if missing:
        raise ConfigError(f"datasets.{dataset}: source {source!r} needs {missing}")
    return found


def load_source(name: str, spec: dict[str, Any], *, inputs: list[Path], workdir: Path) -> PerturbDataset:
    """Build dataset ``name`` from its config entry with the registered loader of ``spec['source']``."""
    return source_spec(name, spec).loader(name, spec, [Path(p) for p in inputs], workdir)
