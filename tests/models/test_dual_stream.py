"""The dual-stream Mamba model: every parameter trains, fits are seeded, inputs are built right,
outputs follow the model contract, bad input fails with a clear error."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from perturbench.data.contract import PerturbDataset
from perturbench.errors import ConfigError
from perturbench.graphs import GeneGraph
from perturbench.models.base import FitContext
from perturbench.models.dual_stream import DualStreamConfig, DualStreamMambaModel
from perturbench.models.dual_stream_inputs import PriorTable, edge_tensors, spectral_order
from perturbench.models.registry import get_model
from perturbench.models.train import loss_terms
from tests._toydata import GENES, toy_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

TINY = {"d_model": 4, "d_state": 4, "d_embed": 4, "latent_dim": 2, "latent_tokens": 2, "n_tokens": 8,
        "epochs": 2, "batch_size": 4, "cell_batch_size": 4, "cells_per_epoch": 16}
TRAIN = ["G00", "G01", "G02", "G03", "G00+G01", "G01+G02", "G01+G03"]
VAL = ["G04", "G00+G02"]
TEST = ["G05", "G02+G04", "G03+G05"]


@pytest.fixture
def toy(rng) -> PerturbDataset:
    return toy_dataset(rng)


def _delta_only(data: PerturbDataset) -> PerturbDataset:
    pb = data.pseudobulk.copy()
    pb.X = np.asarray(pb.X) - data.ctrl
    return PerturbDataset("toy_delta", pb, None, True, "<toy delta>")


def _fit(data: PerturbDataset, *, seed: int = 0, val: list[str] | None = None, **params) -> DualStreamMambaModel:
    context = FitContext(seed=seed, val=data.subset(val) if val else None)
    return DualStreamMambaModel(**{**TINY, **params}).fit(data.subset(TRAIN), context=context)


def test_registry_builds_the_model_with_config_fields():
    model = get_model("dual_stream_mamba", d_state=4)
    assert isinstance(model, DualStreamMambaModel) and model.config.d_state == 4


def test_every_parameter_gets_a_gradient_and_changes_after_one_step(toy):
    model = _fit(toy, epochs=0, prior_dropout=1.0)
    net = model.net
    train = toy.subset(TRAIN)
    inp, y = next(model._pseudobulk_batches(train, np.random.default_rng(0)))
    inp = inp.to("cpu")
    net.train()
    terms = loss_terms(*net(inp), y, model.config)
    terms["total"].backward()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_grad == []
    torch.optim.Adam(net.parameters(), lr=1e-3).step()
    unchanged = [n for n, p in net.named_parameters() if torch.equal(p.detach(), before[n])]
    assert unchanged == []


def test_same_seed_gives_identical_predictions_and_other_seed_differs(toy):
    a = _fit(toy, seed=3, val=VAL).predict(TEST)
    b = _fit(toy, seed=3, val=VAL).predict(TEST)
    c = _fit(toy, seed=4, val=VAL).predict(TEST)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.logvar, b.logvar)
    assert not np.array_equal(a.mean, c.mean)


def test_fit_leaves_the_global_torch_rng_alone(toy):
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    _fit(toy, epochs=1)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("level", ["cells", "pseudobulk", "delta_only"])
def test_predictions_follow_the_contract_at_each_data_level(rng, level):
    data = toy_dataset(rng, cells_per_condition=6 if level == "cells" else 0)
    data = _delta_only(data) if level == "delta_only" else data
    model = _fit(data, val=VAL)
    pred = model.predict(TEST)
    assert pred.model == "dual_stream_mamba" and pred.conditions == TEST and pred.genes == GENES
    assert pred.mean.shape == (3, len(GENES)) and pred.logvar.shape == (3, len(GENES))
    assert np.all(np.isfinite(pred.logvar))
    assert set(model.curves["split"]) == {"train", "val"}


def test_unmeasured_target_still_has_a_perturbation_embedding(toy):
    data = toy.select_genes([g for g in GENES if g != "G00"])
    model = _fit(data)
    assert "G00" in model.encoder.vocab and "G00" not in model.genes
    inp = model._prediction_input(["G00+G01"])
    assert inp.pert[0, model.encoder.vocab.index("G00")] == 1.0


def test_log_dir_gets_loss_curves_and_a_loadable_checkpoint(toy, tmp_path):
    context = FitContext(seed=0, val=toy.subset(VAL), log_dir=tmp_path / "log")
    model = DualStreamMambaModel(**TINY).fit(toy.subset(TRAIN), context=context)
    curves = pd.read_csv(tmp_path / "log" / "loss_curves.tsv", sep="\t")
    assert list(curves.columns) == ["epoch", "split", "lr", "total", "mse", "focus", "kl", "nll"]
    assert list(curves["split"]) == ["train", "val"] * TINY["epochs"]
    ckpt = torch.load(tmp_path / "log" / "model.pt", weights_only=True)
    assert ckpt["genes"] == GENES and ckpt["config"]["d_state"] == TINY["d_state"]
    fresh = type(model.net)(model.config, model.net._graphs())
    fresh.load_state_dict(ckpt["state_dict"])
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["calibration.json", "loss_curves.tsv", "model.pt"]


def test_input_gradients_match_finite_differences(toy):
    model = _fit(toy)
    model.net.double().eval()
    grad = model.input_gradients("G00+G02", 5)
    assert grad.shape == (len(GENES),) and np.any(grad != 0)
    hidden = [model.encoder.prior.hidden_at_prediction("G00+G02")]

    def predicted(x: np.ndarray) -> float:
        inp = model.encoder.encode(["G00+G02"], hidden, x[None, :]).to("cpu", torch.float64)
        return model.net(inp)[0][0, 5].item()

    eps = 1e-6
    for j in (0, 5, 17):
        step = eps * np.eye(len(GENES))[j]
        numeric = (predicted(model.ctrl + step) - predicted(model.ctrl - step)) / (2 * eps)
        assert grad[j] == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_attributions_cover_every_measured_gene(toy):
    scores = _fit(toy).attributions("G03")
    assert list(scores) == GENES and all(v >= 0 for v in scores.values())


def test_prior_table_is_additive_with_fill_and_self_effect():
    genes = ["A", "B", "C"]
    deltas = np.array([[2.0, 0.0, 1.0], [0.0, 4.0, -1.0], [1.0, 1.0, 1.0]])
    table = PriorTable.from_deltas(["A", "B", "A+B"], deltas, genes)
    np.testing.assert_allclose(table.fill, [1.0, 2.0, 0.0])
    assert table.self_effect == pytest.approx(3.0)  # mean of A's change of A (2) and B's of B (4)
    np.testing.assert_allclose(table.prior("A+B", hidden=()), [2.0, 4.0, 0.0])
    np.testing.assert_allclose(table.prior("A+B", hidden={"A"}), [3.0 + 0.0, 2.0 + 4.0, 0.0 - 1.0])
    np.testing.assert_allclose(table.prior("C", hidden=table.hidden_at_prediction("C")), [1.0, 2.0, 3.0])
    assert table.hidden_at_prediction("A+Z") == frozenset({"Z"})


def _refit_effects(conditions, deltas, lam):
    """Reference: ridge effects by an explicit least-squares solve on [X; √λ I]."""
    design = sorted({g for c in conditions for g in c.split("+")})
    x = np.array([[float(g in c.split("+")) for g in design] for c in conditions])
    aug = np.vstack([x, np.sqrt(lam) * np.eye(len(design))])
    target = np.vstack([deltas, np.zeros((len(design), deltas.shape[1]))])
    return dict(zip(design, np.linalg.lstsq(aug, target, rcond=None)[0], strict=True))


def test_ridge_prior_uses_every_condition_and_leaves_each_training_condition_out(rng):
    genes = ["A", "B", "C", "D"]
    conditions = ["A", "B", "C", "A+B", "A+C", "B+D", "C+D", "C+E"]  # E only in C+E: left out, it is unknown
    deltas = rng.normal(size=(len(conditions), len(genes)))
    table = PriorTable.ridge(conditions, deltas, genes, lam=0.1)
    full = _refit_effects(conditions, deltas, 0.1)
    assert sorted(table.singles) == ["A", "B", "C", "D", "E"]  # D and E are seen only in combinations
    np.testing.assert_allclose(table.prior("A+D", hidden=()), full["A"] + full["D"], atol=1e-10)
    for i, cond in enumerate(conditions):  # a training condition sees the fit without itself
        rest = [c for c in conditions if c != cond]
        without = _refit_effects(rest, np.delete(deltas, i, axis=0), 0.1)
        parts = cond.split("+")
        expected = sum(without[g] if g in without else table.fill for g in parts)  # E ∉ genes: no self effect
        np.testing.assert_allclose(table.prior(cond, hidden=()), expected, atol=1e-10)


def test_edge_tensors_reindex_onto_nodes_and_drop_outside_edges():
    graph = GeneGraph(("X", "Y", "Z"), np.array([0, 1, 2]), np.array([1, 2, 0]), np.array([0.5, -0.7, 1.0]))
    edges, weight = edge_tensors(graph, ["Z", "Y"])
    assert edges.tolist() == [[1], [0]] and weight.tolist() == pytest.approx([0.7])


def test_spectral_order_follows_a_path_graph():
    path = [3, 0, 4, 1, 5, 2]  # a chain visiting genes in this order
    src, dst = np.array(path[:-1]), np.array(path[1:])
    graph = GeneGraph(tuple(f"g{i}" for i in range(7)), src, dst, np.ones(5))
    order = spectral_order(graph, [f"g{i}" for i in range(7)]).tolist()
    assert order[:6] in (path, path[::-1]) and order[6] == 6  # isolated gene last


@pytest.mark.parametrize("dense_max", [400, 10])  # dense eigensolver, then the sparse Lanczos branch
def test_spectral_order_recovers_positions_on_a_line(rng, monkeypatch, dense_max):
    monkeypatch.setattr("perturbench.models.dual_stream_inputs._DENSE_EIGH_MAX", dense_max)
    n = 60
    position = rng.permutation(n)  # gene i sits at position[i] on a line; neighbours within 3 steps
    at = np.argsort(position)
    src = np.array([at[p] for p in range(n) for q in range(p + 1, min(p + 4, n))])
    dst = np.array([at[q] for p in range(n) for q in range(p + 1, min(p + 4, n))])
    graph = GeneGraph(tuple(f"g{i}" for i in range(n)), src, dst, np.ones(len(src)))
    order = spectral_order(graph, list(graph.genes)).tolist()
    assert order in (at.tolist(), at[::-1].tolist())


def test_unknown_hyper_parameter_is_rejected():
    with pytest.raises(ConfigError, match=r"model 'dual_stream_mamba': params: unknown hyper-parameter\(s\) \['d_stat'\]"):
        get_model("dual_stream_mamba", d_stat=4)


def test_n_tokens_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="n_tokens must be a power of two or 'per_gene', got 12"):
        DualStreamConfig(n_tokens=12)


def test_non_positive_width_is_rejected():
    with pytest.raises(ValueError, match="DualStreamConfig.d_embed must be >= 1, got 0"):
        DualStreamConfig(d_embed=0)


def test_unknown_device_is_rejected(toy):
    with pytest.raises(ValueError, match="FitContext.device: 'gpu0' is not 'auto' or a torch device"):
        DualStreamMambaModel(**TINY).fit(toy.subset(TRAIN), context=FitContext(device="gpu0"))


def test_bad_gene_order_is_rejected():
    with pytest.raises(ValueError, match=r"gene_order must be one of \('spectral', 'dataset'\), got 'random'"):
        DualStreamConfig(gene_order="random")


def test_bad_fusion_is_rejected():
    with pytest.raises(ValueError, match=r"fusion must be one of \('gate', 'cross_attention'\), got 'sum'"):
        DualStreamConfig(fusion="sum")


def test_predict_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="called before fit"):
        DualStreamMambaModel().predict(["G00"])


def test_non_canonical_condition_is_rejected(toy):
    with pytest.raises(ValueError, match=r"condition 'G02\+G00' is not canonical"):
        _fit(toy, epochs=0).predict(["G02+G00"])


def test_gene_index_out_of_range_is_rejected(toy):
    with pytest.raises(IndexError, match="gene_index 24 outside 0..23"):
        _fit(toy, epochs=0).input_gradients("G00", 24)


def test_validation_with_other_genes_is_rejected(toy):
    val = toy.subset(VAL).select_genes(GENES[:10])
    with pytest.raises(ValueError, match="validation genes differ from the training genes"):
        DualStreamMambaModel(**TINY).fit(toy.subset(TRAIN), context=FitContext(val=val))


def test_training_data_without_perturbations_is_rejected(toy):
    with pytest.raises(ValueError, match="needs at least one training perturbation"):
        DualStreamMambaModel(**TINY).fit(toy.subset([]), context=FitContext())


def test_anndata_is_not_modified_by_fit(toy):
    before = ad.AnnData.copy(toy.pseudobulk)
    _fit(toy)
    np.testing.assert_array_equal(np.asarray(toy.pseudobulk.X), np.asarray(before.X))
