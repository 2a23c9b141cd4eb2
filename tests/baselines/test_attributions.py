"""Gene attributions stored with predictions (|W| for linear models)."""

from __future__ import annotations

import numpy as np
import pytest

from perturbench.models.base import FitContext, Prediction, attribution_record, most_variable_gene
from perturbench.models.registry import get_model
from tests._toydata import SINGLES, toy_dataset


def test_most_variable_gene_is_argmax_of_variance(rng):
    data = toy_dataset(rng)
    values = data.expression(data.conditions)
    assert most_variable_gene(data) == data.genes[int(np.argmax(values.var(axis=0)))]


def test_ridge_attribution_is_abs_weight_column(rng):
    data = toy_dataset(rng)
    model = get_model("ridge").fit(data, context=FitContext())
    record = attribution_record(model, data)
    gene = record["output_gene"]
    column = model.weights[:, data.genes.index(gene)]
    assert record["genes"] == sorted(model.pert_genes)
    expected = dict(zip(model.pert_genes, np.abs(column)))
    assert record["values"] == pytest.approx([expected[g] for g in record["genes"]])


def test_linear_embedding_attribution_matches_single_prediction(rng):
    data = toy_dataset(rng)
    model = get_model("linear_embedding").fit(data, context=FitContext())
    gene = most_variable_gene(data)
    scores = model.attributions(gene)
    column = data.genes.index(gene)
    base = model.offset[column] - model.ctrl[column]
    for target in SINGLES:
        effect = model._predict_deltas([target])[0, column] - base
        assert scores[target] == pytest.approx(abs(effect))


def test_models_without_attributions_record_none(rng):
    data = toy_dataset(rng)
    assert attribution_record(get_model("mean").fit(data, context=FitContext()), data) is None


def test_attribution_round_trips_through_prediction_file(tmp_path, rng):
    data = toy_dataset(rng)
    model = get_model("ridge").fit(data, context=FitContext())
    prediction = model.predict(data.conditions[:3])
    prediction.attribution = attribution_record(model, data)
    prediction.write(tmp_path / "p.h5ad")
    assert Prediction.read(tmp_path / "p.h5ad").attribution == prediction.attribution
