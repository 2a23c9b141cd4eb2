"""``DualStreamMambaModel``: the dual-stream Mamba network behind the benchmark's model contract.

Training data level:

- cells (``train.cells`` present): each epoch draws ``cells_per_epoch`` perturbed cells and pairs
  each with a random control cell ``x``; the network sees ``x`` and the perturbation and predicts
  the perturbed cell as ``ctrl + μ`` (``ctrl`` = control pseudobulk), i.e. it learns
  ``y = cell − ctrl``. Parameterising around the control mean rather than around ``x`` keeps the
  optimum well posed: perturbed and control cells are unpaired, so ``E[cell | x]`` does not depend
  on ``x`` and the network need not learn to cancel ``x``'s noise;
- pseudobulk otherwise: ``x`` = the control pseudobulk (zeros for delta-only data) and
  ``y`` = the condition's mean change.

The network predicts a residual on top of a prior computed from the training pseudobulk
(:class:`~perturbench.models.dual_stream_inputs.PriorTable`): the sum of per-gene effects, by
default ridge effects fitted on every training condition (``prior="ridge"``; each training
condition sees the leave-one-out fit), or the training singles' changes (``prior="additive"``).
The ridge prior was chosen on validation conditions only (real Norman pseudobulk, 3 seeds: lower
top-20-DE MSE than the additive prior for singles and for combinations). During training every single-gene
condition has its own effect hidden from the prior (it would be the answer), and each known
component of a combination is hidden with probability ``prior_dropout``, so the network learns the
unseen-gene cases it meets at prediction time; the network is told which targets are hidden.

``prior="none"`` gives the network no prior (every target hidden, prior change 0);
``network=False`` fits no network and predicts the prior alone (``prior_only``: unlike the ridge
baseline, which gives a target unseen in training no effect, the prior gives it ``fill`` plus the
self-effect on its own gene).

Predictions: mean = control pseudobulk + predicted change; ``logvar`` = per-gene log-variance of
the error of that mean, calibrated on the validation conditions
(:mod:`perturbench.models.calibration`; the network's own ``log σ²`` is kept as ``logvar_raw``).
The perturbation vocabulary holds the measured genes, the GO graph's genes and the
training and validation targets; a target outside it contributes only the prior.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Self

import json

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from perturbench.data.conditions import CTRL, canonical_condition, targets
from perturbench.data.contract import PerturbDataset
from perturbench.graphs import GeneGraph, coexpression_graph
from perturbench.data.io import write_text_atomic
from perturbench.models.base import FitContext, Prediction
from perturbench.models.calibration import Calibration, fit_calibration, gene_spread
from perturbench.models.dual_stream_inputs import Encoder, PriorTable, edge_tensors, spectral_order
from perturbench.models.dual_stream_net import DualStreamConfig, DualStreamNet, NetGraphs, NetInput
from perturbench.models.train import TERMS, Batch, save_training, train_network

__all__ = ["DualStreamConfig", "DualStreamMambaModel"]

_COEXPR_MAX_CELLS = 5000  # cells used to estimate co-expression at cell level
_PREDICT_BATCH = 64


def _dense(x: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def _resolve_device(name: str) -> torch.device:
    """``FitContext.device``: ``"auto"`` (CUDA when available, else CPU) or a torch device string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"FitContext.device: {name!r} is not 'auto' or a torch device") from None


class DualStreamMambaModel:
    """Registry key ``dual_stream_mamba``; keyword arguments are :class:`DualStreamConfig` fields."""

    name = "dual_stream_mamba"
    Config = DualStreamConfig

    def __init__(self, **params: Any):
        self.config = DualStreamConfig(**params)
        self.net: DualStreamNet | None = None
        self.encoder: Encoder | None = None
        self.sigma: Calibration | None = None

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, train: PerturbDataset, *, context: FitContext) -> Self:
        if not train.conditions:
            raise ValueError(f"{train.source}: dual_stream_mamba needs at least one training perturbation")
        if context.val is not None and context.val.genes != train.genes:
            raise ValueError(f"{context.val.source}: validation genes differ from the training genes ({train.source})")
        self._device = _resolve_device(context.device)
        rng = np.random.default_rng(context.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)
            self._build(train, context, rng)
            self.curves = pd.DataFrame(columns=["epoch", "split", "lr", *TERMS])  # no network: no epochs
            if self.net is not None:
                epochs = self._cell_batches if train.cells is not None else self._pseudobulk_batches
                self.curves = train_network(self.net, lambda epoch: epochs(train, rng),
                                            self._val_batches(context.val), self.config, device=self._device)
        self.sigma = None if self.net is None else self._calibrate(train, context.val)
        if context.log_dir is not None:
            self._save(Path(context.log_dir))
        return self

    def restore(self, train: PerturbDataset, *, context: FitContext, checkpoint: Path) -> Self:
        """The fitted model of :meth:`fit` rebuilt without training: the inputs, prior and graphs
        from ``train`` (as :meth:`fit` builds them, same seed), the weights from ``checkpoint``
        (``model.pt``), then σ calibrated afresh on ``context.val``."""
        self._device = _resolve_device(context.device)
        self._build(train, context, np.random.default_rng(context.seed))
        if self.net is None:
            raise ValueError(f"{checkpoint}: a run without a network (network=False) has no checkpoint")
        state = torch.load(checkpoint, map_location=self._device, weights_only=False)
        self.net.load_state_dict(state["state_dict"])
        self.sigma = self._calibrate(train, context.val)
        return self

    def _save(self, log_dir: Path) -> None:
        """Loss curves (header only without a network), checkpoint (with a network), calibration.json."""
        if self.net is None:
            write_text_atomic(log_dir / "loss_curves.tsv", self.curves.to_csv(sep="\t", index=False))
        else:
            save_training(log_dir, self.curves, self.net, self.config, self._checkpoint_meta())
        record = {"calibrated": self.sigma is not None, "mode": self.config.calibration,
                  **(self.sigma.record() if self.sigma is not None else {})}
        write_text_atomic(log_dir / "calibration.json", json.dumps(record, indent=2) + "\n")

    def _calibrate(self, train: PerturbDataset, val: PerturbDataset | None) -> Calibration | None:
        """σ' fitted on the validation conditions (:func:`fit_calibration`; None without any, or when off)."""
        if self.config.calibration == "none" or val is None or not val.conditions:
            return None
        mean, logvar = self._predict_arrays(val.conditions)
        spread = gene_spread(train.expression(train.conditions) - self.ctrl)
        return fit_calibration(mean, logvar, val.expression(val.conditions), mean - self.ctrl, spread,
                               mode=self.config.calibration, covariates=self.calibration_covariates(val.conditions))

    def calibration_covariates(self, conditions: Sequence[str]) -> np.ndarray:
        """(C, 2) per-condition covariates of the σ calibration: the number of targets the prior has
        no training effect for, and 1 for a combination (0 for a single)."""
        return np.array([[len(self.encoder.prior.hidden_at_prediction(c)), float(len(targets(c)) > 1)]
                         for c in conditions], dtype=np.float64).reshape(len(conditions), 2)

    def _build(self, train: PerturbDataset, context: FitContext, rng: np.random.Generator) -> None:
        self.genes = train.genes
        self.ctrl = train.ctrl
        self._train_conditions = list(train.conditions)
        deltas = train.expression(train.conditions) - self.ctrl
        coexpr = coexpression_graph(
            self._coexpression_samples(train, rng),
            self.genes,
            top_k=self.config.coexpr_top_k,
            min_abs_corr=self.config.coexpr_min_abs_corr,
        )
        go = context.go_graph if context.go_graph is not None else coexpr
        seen = {g for ds in (train, context.val) if ds is not None for c in ds.conditions for g in targets(c)}
        vocab = tuple(sorted(set(self.genes) | set(go.genes) | seen))
        self.encoder = Encoder(tuple(self.genes), vocab, self._prior(train, deltas))
        if self.config.network:
            self.net = DualStreamNet(self.config, self._graphs(coexpr, go, vocab)).to(self._device)

    def _prior(self, train: PerturbDataset, deltas: np.ndarray) -> PriorTable:
        if self.config.prior == "ridge":
            return PriorTable.ridge(train.conditions, deltas, self.genes, lam=self.config.prior_lambda)
        if self.config.prior == "additive":
            return PriorTable.from_deltas(train.conditions, deltas, self.genes)
        return PriorTable.empty(self.genes)

    def _graphs(self, coexpr: GeneGraph, go: GeneGraph, vocab: tuple[str, ...]) -> NetGraphs:
        gene_edges, gene_weight = edge_tensors(coexpr, self.genes)
        pert_edges, pert_weight = edge_tensors(go, vocab)
        if self.config.gene_order == "spectral":
            order = torch.from_numpy(spectral_order(coexpr, self.genes))
        else:
            order = torch.arange(len(self.genes))
        return NetGraphs(len(self.genes), len(vocab), gene_edges, gene_weight, pert_edges, pert_weight, order)

    @staticmethod
    def _coexpression_samples(train: PerturbDataset, rng: np.random.Generator) -> np.ndarray:
        """Training samples × genes: up to 5000 cells, else the pseudobulk rows."""
        if train.cells is None:
            return train.expression([CTRL, *train.conditions])
        n = train.cells.n_obs
        rows = np.sort(rng.choice(n, size=min(n, _COEXPR_MAX_CELLS), replace=False))
        return _dense(train.cells.X[rows])

    # -- batches ------------------------------------------------------------------------------
    def _hidden_for_training(self, condition: str, rng: np.random.Generator) -> frozenset[str]:
        genes = targets(condition)
        if len(genes) == 1:
            return frozenset(genes)
        return frozenset(g for g in genes if rng.random() < self.config.prior_dropout)

    def _pseudobulk_batches(self, train: PerturbDataset, rng: np.random.Generator) -> Iterator[Batch]:
        n = len(train.conditions)
        conds = [train.conditions[i % n] for i in rng.permutation(n * self.config.passes_per_epoch)]
        for start in range(0, len(conds), self.config.batch_size):
            chunk = conds[start : start + self.config.batch_size]
            hidden = [self._hidden_for_training(c, rng) for c in chunk]
            x = np.broadcast_to(self.ctrl, (len(chunk), len(self.genes)))
            y = train.expression(chunk) - self.ctrl
            yield self.encoder.encode(chunk, hidden, x), torch.from_numpy(y.astype(np.float32))

    def _cell_batches(self, train: PerturbDataset, rng: np.random.Generator) -> Iterator[Batch]:
        labels = train.cells.obs["condition"].astype(str).to_numpy()
        ctrl_rows, pert_rows = np.flatnonzero(labels == CTRL), np.flatnonzero(labels != CTRL)
        n = self.config.epoch_cells(len(pert_rows), self._device.type)
        picked = rng.choice(pert_rows, size=n, replace=False)
        partners = rng.choice(ctrl_rows, size=n, replace=True)
        size = self.config.cell_batch_size
        for start in range(0, n, size):
            rows, base = picked[start : start + size], partners[start : start + size]
            chunk = [str(c) for c in labels[rows]]
            hidden = [self._hidden_for_training(c, rng) for c in chunk]
            x = _dense(train.cells.X[base])
            y = _dense(train.cells.X[rows]) - self.ctrl
            yield self.encoder.encode(chunk, hidden, x), torch.from_numpy(y.astype(np.float32))

    def _prediction_input(self, conditions: Sequence[str]) -> NetInput:
        hidden = [self.encoder.prior.hidden_at_prediction(c) for c in conditions]
        x = np.broadcast_to(self.ctrl, (len(conditions), len(self.genes)))
        return self.encoder.encode(conditions, hidden, x)

    def _val_batches(self, val: PerturbDataset | None) -> list[Batch] | None:
        if val is None or not val.conditions:
            return None
        conds = val.conditions
        out = []
        for start in range(0, len(conds), _PREDICT_BATCH):
            chunk = conds[start : start + _PREDICT_BATCH]
            y = val.expression(chunk) - self.ctrl
            out.append((self._prediction_input(chunk), torch.from_numpy(y.astype(np.float32))))
        return out

    # -- predict ------------------------------------------------------------------------------
    def _check_ready(self, conditions: Sequence[str]) -> None:
        if self.encoder is None:
            raise RuntimeError("dual_stream_mamba: predict/input_gradients called before fit")
        for c in conditions:
            if canonical_condition(c, where="dual_stream_mamba.predict") != c:
                raise ValueError(f"dual_stream_mamba: condition {c!r} is not canonical")

    def predict(self, conditions: Sequence[str]) -> Prediction:
        conditions = list(conditions)
        self._check_ready(conditions)
        if self.net is None:  # network=False: the prior alone, no uncertainty
            prior = self._prediction_input(conditions).prior.numpy().reshape(len(conditions), len(self.genes))
            return Prediction(self.name, conditions, list(self.genes), prior + self.ctrl)
        mean, logvar = self._predict_arrays(conditions)
        if self.sigma is None:
            return Prediction(self.name, conditions, list(self.genes), mean, logvar)
        calibrated = self.sigma.apply(logvar, mean - self.ctrl, self.calibration_covariates(conditions))
        return Prediction(self.name, conditions, list(self.genes), mean, calibrated, logvar_raw=logvar)

    @torch.no_grad()
    def _predict_arrays(self, conditions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted mean expression and the network's raw log σ², both (C, G)."""
        self.net.eval()
        means, logvars = [], []
        for start in range(0, len(conditions), _PREDICT_BATCH):
            inp = self._prediction_input(conditions[start : start + _PREDICT_BATCH])
            mu, logvar, _ = self.net(inp.to(self._device, self._dtype))
            means.append(mu.double().cpu().numpy() + self.ctrl)
            logvars.append(logvar.double().cpu().numpy())
        shape = (0, len(self.genes))
        return (np.vstack(means) if means else np.zeros(shape)), (np.vstack(logvars) if logvars else np.zeros(shape))

    def input_gradients(self, condition: str, gene_index: int) -> np.ndarray:
        """∂ (predicted expression of gene ``gene_index`` under ``condition``) / ∂ (input expression
        ``x``), shape (n_genes,), at ``x`` = the control pseudobulk."""
        return self._input_gradients([condition], gene_index)[0]

    def attributions(self, output_gene: str) -> dict[str, float]:
        """Input gene → mean |input gradient| of ``output_gene``'s prediction over (up to 64)
        training conditions (the hook used by ``perturbench.models.base.attribution_record``)."""
        if output_gene not in self.genes:
            raise KeyError(f"dual_stream_mamba: output gene {output_gene!r} is not a measured gene")
        grads = self._input_gradients(self._train_conditions[:_PREDICT_BATCH], self.genes.index(output_gene))
        return dict(zip(self.genes, np.abs(grads).mean(axis=0).tolist(), strict=True))

    def _input_gradients(self, conditions: Sequence[str], gene_index: int) -> np.ndarray:
        """Per-condition input gradients, (n_conditions, n_genes): samples are independent in eval
        mode, so one backward pass of Σ_b prediction[b, gene] gives every row (zeros without a
        network or without the data stream: only the data stream reads the input expression)."""
        self._check_ready(conditions)
        if not 0 <= gene_index < len(self.genes):
            raise IndexError(f"dual_stream_mamba: gene_index {gene_index!r} outside 0..{len(self.genes) - 1}")
        if self.net is None:
            return np.zeros((len(conditions), len(self.genes)))
        self.net.eval()
        inp = self._prediction_input(conditions).to(self._device, self._dtype)
        inp.x.requires_grad_(True)
        mu, _, _ = self.net(inp)
        (grad,) = torch.autograd.grad(mu[:, gene_index].sum(), inp.x, allow_unused=True)  # None: x unused
        return np.zeros(tuple(inp.x.shape)) if grad is None else grad.double().cpu().numpy()

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def _checkpoint_meta(self) -> dict:
        prior = self.encoder.prior
        return {
            "genes": list(self.genes),
            "vocab": list(self.encoder.vocab),
            "ctrl": torch.from_numpy(self.ctrl),
            "prior_fill": torch.from_numpy(prior.fill),
            "prior_singles": {g: torch.from_numpy(v) for g, v in prior.singles.items()},
            "prior_self_effect": prior.self_effect,
        }

