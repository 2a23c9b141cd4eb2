"""Component switches of the dual-stream model: each changes the module tree as documented, still
trains (every parameter gets a gradient), and the attention encoder matches Mamba's widths;
σ calibration is fitted on validation conditions only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from perturbench.models.base import FitContext
from perturbench.models.calibration import fit_calibration, gene_spread
from perturbench.models.dual_stream import DualStreamConfig, DualStreamMambaModel
from perturbench.models.sequence import AttentionEncoder, token_layout
from perturbench.models.train import loss_terms
from tests._toydata import GENES, toy_dataset
from tests.models.test_dual_stream import TEST, TINY, TRAIN, VAL

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

SWITCHES = {
    "attention": {"encoder": "attention"},
    "no_encoder": {"encoder": "none"},
    "no_data_stream": {"data_stream": False},
    "no_graphs": {"graphs": False},
    "no_prior": {"prior": "none"},
    "tokens_per_gene": {"n_tokens": "per_gene"},
}


@pytest.fixture
def toy(rng):
    return toy_dataset(rng)


def _fit(data, *, val=None, log_dir=None, **params) -> DualStreamMambaModel:
    context = FitContext(seed=0, val=data.subset(val) if val else None, log_dir=log_dir)
    return DualStreamMambaModel(**{**TINY, **params}).fit(data.subset(TRAIN), context=context)


def _module_types(net: torch.nn.Module) -> dict[str, str]:
    return {name: type(m).__name__ for name, m in net.named_modules()}


def _untrained(model: DualStreamMambaModel, data) -> list[str]:
    """Parameters without a non-zero gradient after one backward pass on a training batch."""
    inp, y = next(model._pseudobulk_batches(data.subset(TRAIN), np.random.default_rng(0)))
    model.net.train()
    loss_terms(*model.net(inp.to("cpu")), y, model.config)["total"].backward()
    return [n for n, p in model.net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]


@pytest.mark.parametrize("variant", list(SWITCHES))
def test_each_switch_still_trains_every_parameter(toy, variant):
    model = _fit(toy, epochs=0, prior_dropout=1.0, **SWITCHES[variant])
    assert _untrained(model, toy) == []
    assert np.all(np.isfinite(_fit(toy, epochs=1, val=VAL, **SWITCHES[variant]).predict(TEST).mean))


def test_switches_change_the_module_tree_as_documented(toy):
    full = _module_types(_fit(toy, epochs=0).net)
    assert full["knowledge.sequence.encoder"] == "BiMambaEncoder" and full["data"] == "DataStream"
    assert full["fusion"] == "GateFusion" and full["knowledge.gene_convs.0"] == "GCNConv"
    attention = _module_types(_fit(toy, epochs=0, encoder="attention").net)
    assert attention["knowledge.sequence.encoder"] == "AttentionEncoder"
    assert not any("Mamba" in t for t in attention.values())
    no_encoder = _module_types(_fit(toy, epochs=0, encoder="none").net)
    assert not any(n.startswith("knowledge.sequence") for n in no_encoder)
    no_data = _module_types(_fit(toy, epochs=0, data_stream=False).net)
    assert not any(n.startswith(("data", "fusion")) for n in no_data)
    no_graphs = _module_types(_fit(toy, epochs=0, graphs=False).net)
    assert not any(t in ("GCNConv", "GraphConv") for t in no_graphs.values())
    assert no_graphs["data.embed"] == "Linear"


def test_attention_and_mamba_share_widths_and_depth(toy):
    shapes = {enc: {n: p.shape for n, p in _fit(toy, epochs=0, encoder=enc, n_layers=2).net.named_parameters()
                    if ".sequence.encoder." not in n} for enc in ("mamba", "attention")}
    assert shapes["mamba"] == shapes["attention"]  # everything around the encoder is identical
    attention = _fit(toy, epochs=0, encoder="attention", n_layers=2).net.knowledge.sequence.encoder
    layers = attention.layers.layers
    assert len(layers) == 2 and layers[0].self_attn.embed_dim == TINY["d_model"]
    assert layers[0].linear1.out_features == DualStreamConfig().expand * TINY["d_model"]
    x = torch.randn(3, 8, TINY["d_model"])
    assert AttentionEncoder(DualStreamConfig(**{**TINY, "encoder": "attention"}))(x).shape == x.shape


def test_attention_encoder_is_bidirectional():
    enc = AttentionEncoder(DualStreamConfig(d_model=4, encoder="attention")).eval()
    x = torch.randn(1, 6, 4)
    changed = x.clone()
    changed[0, -1] = torch.randn(4)
    assert not torch.allclose(enc(x)[0, 0], enc(changed)[0, 0])  # the first token sees the last


def test_token_layout_per_gene_pads_to_a_power_of_two():
    assert token_layout("per_gene", 2000) == (2048, 1)
    assert token_layout(64, 2000) == (64, 32)
    assert token_layout(256, 24) == (32, 1)


def test_per_gene_tokens_give_one_gene_per_token(toy):
    seq = _fit(toy, epochs=0, n_tokens="per_gene").net.knowledge.sequence
    assert (seq.n_tokens, seq.per_token) == (32, 1) and seq.tokenize.in_features == TINY["d_embed"]


def test_without_the_data_stream_the_input_expression_has_zero_attribution(toy):
    model = _fit(toy, epochs=0, data_stream=False)
    assert set(model.attributions("G03").values()) == {0.0}  # only the data stream reads x


def test_no_prior_gives_zero_prior_with_every_target_hidden(toy):
    model = _fit(toy, epochs=0, prior="none")
    inp = model._prediction_input(["G00+G01"])
    assert torch.all(inp.prior == 0)
    assert inp.hidden_flag[0, GENES.index("G00")] == 1 and inp.hidden_flag[0, GENES.index("G01")] == 1


def test_prior_only_predicts_the_prior_without_a_network(toy, tmp_path):
    model = _fit(toy, network=False, val=VAL, log_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration.json", "loss_curves.tsv"]  # rule outputs
    assert json.loads((tmp_path / "calibration.json").read_text())["calibrated"] is False
    pred = model.predict(TEST)
    assert model.net is None and pred.logvar is None
    expected = np.stack([model.encoder.prior.prior(c, model.encoder.prior.hidden_at_prediction(c)) for c in TEST])
    np.testing.assert_allclose(pred.mean, expected + model.ctrl)
    assert set(model.attributions("G03").values()) == {0.0}


@pytest.mark.parametrize(("field", "value"), [("encoder", "rnn"), ("prior", "mean"), ("data_stream", "yes"),
                                              ("n_tokens", "all"), ("calibration", "isotonic")])
def test_bad_switch_values_are_rejected(field, value):
    with pytest.raises(ValueError, match=rf"DualStreamConfig\.{field} must be"):
        DualStreamConfig(**{field: value})


def test_attention_heads_must_divide_the_width():
    with pytest.raises(ValueError, match=r"attention_heads \(3\) must divide d_model \(16\)"):
        DualStreamConfig(encoder="attention", attention_heads=3)


# -- calibration --------------------------------------------------------------------------------
def test_scale_calibration_is_the_closed_form_factor():
    r = np.array([[1.0, -2.0], [0.5, 0.0]])
    logvar = np.log(np.array([[1.0, 4.0], [1.0, 1.0]]))
    cal = fit_calibration(r, logvar, np.zeros_like(r), np.ones_like(r), np.ones(2), mode="scale")
    assert cal.a == pytest.approx((1.0 + 1.0 + 0.25 + 0.0) / 4) and cal.b == cal.c == 0.0  # mean(r²/σ²)
    np.testing.assert_allclose(cal.apply(np.zeros((1, 2)), np.ones((1, 2))), np.log(cal.a) * np.ones((1, 2)))


def test_spread_calibration_recovers_the_spread_term(rng):
    spread = np.array([0.01, 0.04, 1.0, 4.0])
    truth = rng.normal(0.0, np.sqrt(0.5 * spread), (4000, 4))  # errors follow the spread, not σ
    change = rng.normal(0.0, 1.0, truth.shape)  # unrelated to the errors
    cal = fit_calibration(np.zeros_like(truth), np.zeros_like(truth), truth, change, spread, mode="select")
    assert cal.b == pytest.approx(0.5, rel=0.1) and cal.a < 0.05 and cal.c < 0.05
    np.testing.assert_allclose(gene_spread(np.array([[0.0, 1.0], [2.0, 1.0]])), [1.0, 0.0])


def test_change_calibration_recovers_the_predicted_change_term(rng):
    change = rng.normal(0.0, 1.0, (4000, 3))
    truth = rng.normal(0.0, np.sqrt(0.3) * np.abs(change))  # errors grow with the predicted change
    cal = fit_calibration(np.zeros_like(truth), np.zeros_like(truth), truth, change, np.ones(3), mode="select")
    assert cal.c == pytest.approx(0.3, rel=0.1) and cal.a < 0.05 and cal.b < 0.05


def test_select_rejects_a_form_that_tracks_the_error_but_misses_the_coverage(rng):
    change = rng.normal(0.0, 1.0, (2000, 3))
    residual = change + rng.normal(0.0, 0.01, change.shape)  # the truth did not change: |r| ≈ |Δ̂|
    logvar = np.log(rng.uniform(0.5, 2.0, change.shape))
    cal = fit_calibration(np.zeros_like(change), logvar, residual, change, np.ones(3), mode="select")
    assert cal.c == 0.0  # σ'² ∝ Δ̂² would put nearly every |r| at exactly one σ': 50% coverage ≈ 0 or 1


def test_calibration_never_reads_test_conditions(rng, tmp_path):
    data = toy_dataset(rng)
    changed = data.pseudobulk.copy()
    rows = changed.obs_names.isin(TEST)
    changed.X = np.asarray(changed.X).copy()
    changed.X[rows] += 5.0  # other test truths: calibration must not move
    other = type(data)(data.name, changed, None, data.delta_only, data.source)
    records, sigmas = [], []
    for i, ds in enumerate((data, other)):
        model = _fit(ds, val=VAL, log_dir=tmp_path / str(i))
        records.append(json.loads((tmp_path / str(i) / "calibration.json").read_text()))
        sigmas.append(model.predict(TEST).logvar)
    assert records[0] == records[1] and records[0]["calibrated"] is True
    np.testing.assert_array_equal(sigmas[0], sigmas[1])


def test_predictions_keep_the_raw_log_variance(toy):
    model = _fit(toy, val=VAL)
    pred = model.predict(TEST)
    covariates = model.calibration_covariates(TEST)
    np.testing.assert_allclose(pred.logvar, model.sigma.apply(pred.logvar_raw, pred.mean - model.ctrl, covariates))
    assert _fit(toy).predict(TEST).logvar_raw is None  # no validation conditions: not calibrated
