"""Training loop: loss terms by hand, early stopping with best-weight restore, the plateau
schedule, curves and atomic checkpoint files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from perturbench.models.dual_stream_net import DualStreamConfig, NetInput
from perturbench.models.train import TERMS, evaluate, loss_terms, save_training, train_network

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


class _Shift(nn.Module):
    """μ = prior + b (one parameter per gene), log σ² = 0, KL = 0: a stand-in network."""

    def __init__(self, n_genes: int):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(n_genes))

    def forward(self, inp: NetInput):
        mu = inp.prior + self.b  # (B, G)
        return mu, torch.zeros_like(mu), self.b.sum() * 0.0


def _batch(target: float, n_genes: int = 3, n: int = 2):
    zeros = torch.zeros(n, n_genes)
    inp = NetInput(zeros, zeros, torch.zeros(n, 1), torch.zeros(n, 1), zeros, zeros)
    return inp, torch.full((n, n_genes), target)


def test_loss_terms_match_hand_computation():
    mu = torch.tensor([[0.0, 1.0]])
    y = torch.tensor([[2.0, 0.0]])
    logvar = torch.tensor([[0.0, np.log(4.0)]])
    cfg = DualStreamConfig(w_mse=1.0, autofocus_gamma=1.0, w_kl=0.5, w_nll=2.0)
    terms = loss_terms(mu, logvar, torch.tensor(0.2), y, cfg)
    assert terms["mse"].item() == pytest.approx((4 + 1) / 2)
    assert terms["focus"].item() == pytest.approx((8 + 1) / 2)  # |err|^(2+γ), γ = 1
    nll = ((0.0 + 4 / 2) + (0.5 * np.log(4.0) + 1 / 8)) / 2
    assert terms["nll"].item() == pytest.approx(nll)
    assert terms["total"].item() == pytest.approx(4.5 + 0.5 * 0.2 + 2.0 * nll)


def test_zero_gamma_focus_is_the_mse():
    mu, y = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), torch.zeros(3, 4)
    terms = loss_terms(mu, torch.zeros(3, 4), torch.tensor(0.0), y, DualStreamConfig())
    assert terms["focus"].item() == pytest.approx(terms["mse"].item())


def test_early_stopping_restores_the_best_validation_weights():
    net = _Shift(3)
    cfg = DualStreamConfig(epochs=10, patience=2, lr=0.1, weight_decay=0.0, w_nll=0.0)
    train, val = [_batch(+1.0)], [_batch(0.0)]  # training moves b away from the validation optimum
    curves = train_network(net, lambda epoch: train, val, cfg, device=torch.device("cpu"))
    val_mse = curves[curves["split"] == "val"]["mse"].to_numpy()
    assert len(val_mse) == 3  # best at epoch 0, then `patience` worse epochs
    assert evaluate(net, val, cfg, torch.device("cpu"))["mse"] == pytest.approx(val_mse.min())


def test_plateau_halves_the_learning_rate():
    net = _Shift(3)
    cfg = DualStreamConfig(epochs=4, patience=10, lr=0.1, lr_patience=0, lr_factor=0.5, weight_decay=0.0)
    curves = train_network(net, lambda epoch: [_batch(+1.0)], [_batch(0.0)], cfg, device=torch.device("cpu"))
    lrs = curves[curves["split"] == "train"]["lr"].tolist()
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.025])  # epoch 0 improves on +inf; each later one is worse


def test_without_validation_every_epoch_runs():
    cfg = DualStreamConfig(epochs=3, patience=1)
    curves = train_network(_Shift(3), lambda epoch: [_batch(1.0)], None, cfg, device=torch.device("cpu"))
    assert curves["epoch"].tolist() == [0, 1, 2] and set(curves["split"]) == {"train"}


def test_save_training_writes_both_files_and_no_temporaries(tmp_path):
    net = _Shift(2)
    curves = pd.DataFrame([{"epoch": 0, "split": "train", "lr": 1e-3, **dict.fromkeys(TERMS, 1.0)}])
    save_training(tmp_path / "log", curves, net, DualStreamConfig(), {"genes": ["A", "B"]})
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["loss_curves.tsv", "model.pt"]
    back = torch.load(tmp_path / "log" / "model.pt", weights_only=True)
    assert back["genes"] == ["A", "B"] and back["config"]["lr"] == 1e-3
    torch.testing.assert_close(back["state_dict"]["b"], net.b.detach())
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "log" / "loss_curves.tsv", sep="\t"), curves)
