"""Training loop of the dual-stream network: loss, Adam + ReduceLROnPlateau, early stopping,
loss curves and checkpoint.

Loss (per batch, means over batch × genes)::

    L = w_mse · mean |y − μ|^(2+γ)                       (γ = 0: MSE; γ > 0: GEARS' autofocus)
      + w_kl  · KL(q(z|x) ‖ N(0, I))                     (data-stream VAE)
      + w_nll · mean(½ log σ² + (y − μ)² / (2σ²))        (Kendall & Gal heteroscedastic NLL)

Early stopping and the learning-rate schedule follow the validation ``mse`` term (mean (y − μ)²);
without validation data they follow the training loss and no epoch is skipped.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from perturbench.data.io import atomic_path
from perturbench.models.dual_stream_net import DualStreamConfig, DualStreamNet, NetInput

Batch = tuple[NetInput, Tensor]  # (inputs, target change y (B, G))
TERMS = ("total", "mse", "focus", "kl", "nll")


def loss_terms(mu: Tensor, logvar: Tensor, kl: Tensor, y: Tensor, config: DualStreamConfig) -> dict[str, Tensor]:
    """The loss terms of the module docstring; ``total`` is their weighted sum."""
    err = y - mu  # (B, G)
    mse = err.pow(2).mean()
    focus = err.abs().pow(2.0 + config.autofocus_gamma).mean()
    nll = (0.5 * logvar + err.pow(2) / (2.0 * torch.exp(logvar))).mean()
    total = config.w_mse * focus + config.w_kl * kl + config.w_nll * nll
    return {"total": total, "mse": mse, "focus": focus, "kl": kl, "nll": nll}


def _autocast(config: DualStreamConfig, device: torch.device) -> torch.autocast:
    """bfloat16 autocast when ``config.autocast_bf16`` and ``device`` is CUDA; a no-op otherwise."""
    device = torch.device(device)
    enabled = bool(config.autocast_bf16) and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _to(batch: Batch, device: torch.device) -> Batch:
    inp, y = batch
    return inp.to(device), y.to(device)


def _mean_terms(
    net: DualStreamNet, batches: Iterable[Batch], config: DualStreamConfig, device,
    opt: torch.optim.Optimizer | None = None,
) -> dict[str, float]:
    """Loss terms averaged over the examples of ``batches``; with ``opt``, one optimiser step per
    batch (an epoch of training), without it the network in eval mode (latent ``z`` = its mean)."""
    net.train(opt is not None)
    sums, n = dict.fromkeys(TERMS, 0.0), 0
    for batch in batches:
        inp, y = _to(batch, device)
        with _autocast(config, device):
            terms = loss_terms(*net(inp), y, config)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
        for k in TERMS:
            sums[k] += terms[k].item() * len(y)
        n += len(y)
    return {k: v / max(n, 1) for k, v in sums.items()}


@torch.no_grad()
def evaluate(net: DualStreamNet, batches: Iterable[Batch], config: DualStreamConfig, device) -> dict[str, float]:
    """Mean loss terms over ``batches`` in eval mode (latent ``z`` = its mean)."""
    return _mean_terms(net, batches, config, device)


def train_network(
    net: DualStreamNet,
    train_batches: Callable[[int], Iterable[Batch]],
    val_batches: list[Batch] | None,
    config: DualStreamConfig,
    *,
    device: torch.device,
    desc: str = "dual_stream_mamba",
) -> pd.DataFrame:
    """Fit ``net`` in place; keep the weights of the best validation epoch. Returns the loss curves
    (one row per epoch and split: ``epoch, split, lr`` and every term of :data:`TERMS`)."""
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=config.lr_factor, patience=config.lr_patience)
    rows, best, best_state, stale = [], np.inf, None, 0
    bar = tqdm(range(config.epochs), desc=desc, file=sys.stderr, leave=False)
    for epoch in bar:
        lr = opt.param_groups[0]["lr"]
        train_terms = _mean_terms(net, train_batches(epoch), config, device, opt)
        rows.append({"epoch": epoch, "split": "train", "lr": lr, **train_terms})
        monitor = train_terms["total"]
        if val_batches:
            rows.append({"epoch": epoch, "split": "val", "lr": lr, **evaluate(net, val_batches, config, device)})
            monitor = rows[-1]["mse"]
        sched.step(monitor)
        bar.set_postfix(train=f"{train_terms['total']:.4f}", monitor=f"{monitor:.4f}")
        stale = 0 if monitor < best else stale + 1
        best = min(best, monitor)
        if val_batches and stale == 0:
            best_state = copy.deepcopy(net.state_dict())
        if val_batches and stale >= config.patience:
            break
    bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    return pd.DataFrame(rows, columns=["epoch", "split", "lr", *TERMS])


def save_training(
    log_dir: Path, curves: pd.DataFrame, net: DualStreamNet, config: DualStreamConfig, meta: dict
) -> None:
    """Write ``loss_curves.tsv`` and the checkpoint ``model.pt`` (config, weights, ``meta``) atomically."""
    log_dir = Path(log_dir)
    with atomic_path(log_dir / "loss_curves.tsv") as tmp:
        curves.to_csv(tmp, sep="\t", index=False)
    with atomic_path(log_dir / "model.pt") as tmp:
        torch.save({"config": asdict(config), "state_dict": net.state_dict(), **meta}, tmp)
