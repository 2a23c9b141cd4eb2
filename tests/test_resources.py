"""Resource requests of the workflow's rules (perturbench.resources), from files in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from perturbench.resources import (
    ARCHIVE_FACTOR,
    BYTES_PER_ENTRY,
    cells_mib,
    file_mib,
    input_mem_mb,
    job_mem_mb,
    job_runtime,
    reads_cells,
    simulate_mem_mb,
)

MIB = 2**20
CONFIG = {
    "datasets": {
        "sim": {"source": "simulated", "preset": "tiny"},
        "own": {"source": "cells", "path": "data/own.h5ad"},
        "k562": {"source": "gears", "remote": "replogle_k562_essential"},
    },
    "models": {"mean": None, "gears": None},
}


def _file(path: Path, mib: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * int(mib * MIB))
    return path


def test_file_mib_is_zero_for_a_missing_file(tmp_path):
    assert file_mib(tmp_path / "nope") == 0.0
    assert file_mib(_file(tmp_path / "x", 2)) == 2.0


def test_cells_mib_prefers_the_prepared_file(tmp_path):
    _file(tmp_path / "results" / "sim" / "prepared" / "cells.h5ad", 3)
    assert cells_mib(CONFIG, "sim", root=tmp_path) == 3.0


def test_cells_mib_estimates_before_the_file_exists(tmp_path):
    from perturbench.data.simulate import SIMULATION_PRESETS

    tiny = SIMULATION_PRESETS["tiny"]
    assert cells_mib(CONFIG, "sim", root=tmp_path) == pytest.approx(BYTES_PER_ENTRY * tiny.n_cells * tiny.n_genes / MIB)
    assert cells_mib(CONFIG, "k562", root=tmp_path) == pytest.approx(BYTES_PER_ENTRY * 160_000 * 5_000 / MIB)
    _file(tmp_path / "data" / "own.h5ad", 5)
    assert cells_mib(CONFIG, "own", root=tmp_path) == 5.0


def test_only_fits_of_cell_models_read_cells():
    assert reads_cells(CONFIG, "gears")
    assert not reads_cells(CONFIG, "mean")
    assert not reads_cells(CONFIG, None)
    assert not reads_cells(CONFIG, "not_a_run")


def test_job_mem_mb_scales_with_cells_or_pseudobulk(tmp_path):
    _file(tmp_path / "results" / "sim" / "prepared" / "cells.h5ad", 100)
    _file(tmp_path / "results" / "sim" / "prepared" / "pseudobulk.h5ad", 10)
    fit = dict(base=1000, per_cell_mib=2.0, per_pb_mib=4.0, root=tmp_path)
    assert job_mem_mb(CONFIG, "sim", "gears", **fit) == 1000 + 200
    assert job_mem_mb(CONFIG, "sim", "mean", **fit) == 1000 + 40
    assert job_mem_mb(CONFIG, "sim", None, **fit) == 1000 + 40


def test_job_runtime_adds_minutes_per_gib_of_cells(tmp_path):
    _file(tmp_path / "results" / "sim" / "prepared" / "cells.h5ad", 512)
    assert job_runtime(CONFIG, "sim", "gears", base=10, per_gib=60, root=tmp_path) == 40
    assert job_runtime(CONFIG, "sim", "mean", base=10, per_gib=60, root=tmp_path) == 10


def test_input_mem_mb_counts_archives_at_their_unpacked_size(tmp_path):
    h5ad, archive = _file(tmp_path / "a.h5ad", 10), _file(tmp_path / "b.archive", 10)
    assert input_mem_mb([h5ad], base=100, factor=1.5) == 100 + 15
    assert input_mem_mb([archive], base=100, factor=1.5) == int(100 + 1.5 * 10 * ARCHIVE_FACTOR)


def test_simulate_mem_mb_follows_the_preset_and_params():
    small = {"datasets": {"s": {"source": "simulated", "preset": "tiny", "params": {"cells_per_condition": 5}}}}
    big = {"datasets": {"s": {"source": "simulated", "preset": "tiny", "params": {"cells_per_condition": 500}}}}
    assert simulate_mem_mb(big, "s") > simulate_mem_mb(small, "s") >= 1000
