"""Device-aware training of the dual-stream model: cells_per_epoch 'auto' and bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from perturbench.models.dual_stream_net import CPU_CELLS_PER_EPOCH, DualStreamConfig
from perturbench.models.train import _autocast


@pytest.mark.parametrize(
    ("setting", "n_cells", "device", "expected"),
    [("auto", 160_000, "cuda", 160_000), ("auto", 160_000, "cpu", CPU_CELLS_PER_EPOCH), ("auto", 500, "cpu", 500),
     (300, 160_000, "cuda", 300), (300, 200, "cpu", 200)],
)
def test_epoch_cells(setting, n_cells, device, expected):
    assert DualStreamConfig(cells_per_epoch=setting).epoch_cells(n_cells, device) == expected


@pytest.mark.parametrize("bad", ["all", 0, -5])
def test_bad_cells_per_epoch_rejected(bad):
    with pytest.raises(ValueError, match="cells_per_epoch must be >= 1 or 'auto'"):
        DualStreamConfig(cells_per_epoch=bad)


def test_bf16_autocast_only_on_cuda():
    cpu = _autocast(DualStreamConfig(autocast_bf16=True), torch.device("cpu"))
    with cpu:
        assert not torch.is_autocast_enabled("cpu")
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.float32
