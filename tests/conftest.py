"""Shared fixtures: seeded random generator, path to the real data beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$PERTURBENCH_SHARED_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("PERTURBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20190101)


@pytest.fixture
def shared_file():
    """Return a real-data file from ../shared/data, or skip the test with the reason."""

    def get(name: str) -> Path:
        path = shared_data_dir() / name
        if not path.exists():
            pytest.skip(f"real data file {path} not present (set PERTURBENCH_SHARED_DATA)")
        return path

    return get


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: extra intra-op threads only add synchronisation cost (seconds on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
