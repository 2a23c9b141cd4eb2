"""The facts of one model run, stored in its prediction file as ``uns['run']``.

A run record says what made the predictions, so readers (the report, other tools) never
re-derive it from run names, paths or the config: ``run`` (the run name, the ``{model}``
wildcard), ``model`` (the registered name), ``params`` (every hyper-parameter, defaults
included), ``featureset``, ``seed``, ``split_checksum`` (the manifest's), ``dataset_fingerprint``
(:func:`dataset_fingerprint`), ``versions`` (package → version), ``device``, ``wall_s`` and
``cpu_s`` (fit + predict, this process).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from perturbench.data.contract import PerturbDataset
from perturbench.errors import ConfigError

PACKAGES = ("perturbench", "numpy", "scipy", "pandas", "anndata", "scanpy", "torch", "mambapy", "cell-gears")
RECORD_FIELDS = ("run", "model", "params", "featureset", "seed", "split_checksum", "dataset_fingerprint",
                 "versions", "device", "wall_s", "cpu_s")


def package_versions() -> dict[str, str]:
    """Installed version of each package of :data:`PACKAGES` (``"not installed"`` otherwise)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def dataset_fingerprint(ds: PerturbDataset) -> str:
    """sha256 over the pseudobulk's gene names, condition names and float64 values (row-major).

    Equal for the same data however it was stored; any changed gene, condition or value changes it.
    """
    digest = hashlib.sha256()
    digest.update("\t".join(ds.genes).encode() + b"\n")
    digest.update("\t".join(ds.pseudobulk.obs_names).encode() + b"\n")
    x = ds.pseudobulk.X
    dense = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    digest.update(np.ascontiguousarray(dense, dtype=np.float64).tobytes())
    return digest.hexdigest()


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Yield a dict that holds ``wall_s`` and ``cpu_s`` of the ``with`` block once it ends."""
    cost: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield cost
    finally:
        cost["wall_s"] = time.perf_counter() - wall
        cost["cpu_s"] = time.process_time() - cpu


def run_record(*, run: str, model: str, params: dict[str, Any], featureset: str, seed: int, split_checksum: str,
               dataset_fingerprint: str, device: str, cost: dict[str, float]) -> dict[str, Any]:
    """The ``uns['run']`` record (module docstring); ``cost`` from :func:`measured`."""
    return {"run": run, "model": model, "params": dict(params), "featureset": featureset, "seed": int(seed),
            "split_checksum": split_checksum, "dataset_fingerprint": dataset_fingerprint,
            "versions": package_versions(), "device": device, "wall_s": float(cost["wall_s"]),
            "cpu_s": float(cost["cpu_s"])}


@dataclass(frozen=True)
class RunLabels:
    """Which run made a prediction file: the run name (the ``{model}`` wildcard), feature set, split seed."""

    run: str
    featureset: str
    seed: int


def run_labels(record: dict[str, Any] | None, source: str | Path) -> RunLabels:
    """The labels of the prediction file ``source`` read from its run record (``uns['run']``), never
    from its path, so a renamed or moved file keeps them; a missing record or an empty field is an
    error naming the file and the field."""
    if record is None:
        raise ConfigError(f"{source}: uns['run']: missing (the run record names the run, featureset and seed)")
    for key in ("run", "featureset", "seed"):
        if record.get(key) is None or record.get(key) == "":
            raise ConfigError(f"{source}: uns['run']['{key}']: missing or empty")
    return RunLabels(run=str(record["run"]), featureset=str(record["featureset"]), seed=int(record["seed"]))
