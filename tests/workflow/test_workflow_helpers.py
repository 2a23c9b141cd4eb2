"""DAG-time helpers and the metric-table collector."""

from __future__ import annotations

import pandas as pd
import pytest

from perturbench.errors import ConfigError
from perturbench.pipeline import collect_metrics
from perturbench.workflow import check_config, model_runs, runs_for

CONFIG = {
    "datasets": {"cells": {"source": "simulated"}, "bulk": {"source": "norman_npz", "path": "x.npz"}},
    "models": {"mean": None, "gears": {"params": {"epochs": 1}}, "dual_stream_mamba": {"params": {"epochs": 2}}},
    "ablation": {"enabled": True, "d_state": [4, 128]},
}


def test_ablation_expands_mamba_runs_with_base_params():
    runs = model_runs(CONFIG)
    assert runs["dual_stream_mamba_dstate4"] == {
        "model": "dual_stream_mamba",
        "params": {"epochs": 2, "d_state": 4},
        "featuresets": None,
    }
    assert runs["mean"] == {"model": "mean", "params": {}, "featuresets": None}
    assert list(runs)[-1] == "dual_stream_mamba_dstate128"


def test_cell_only_models_are_dropped_for_pseudobulk_sources():
    assert "gears" in runs_for(CONFIG, "cells")
    assert "gears" not in runs_for(CONFIG, "bulk")
    assert "dual_stream_mamba" in runs_for(CONFIG, "bulk")


def test_collect_metrics_takes_the_columns_from_the_tables_not_the_paths(tmp_path):
    path = tmp_path / "anywhere.tsv"
    pd.DataFrame({"featureset": ["no_mt"], "model": ["ridge"], "seed": [3], "condition": ["A"],
                  "subgroup": ["unseen_single"], "metric": ["rmse"], "value": [0.5]}).to_csv(path, sep="\t", index=False)
    table = collect_metrics([path])
    assert table.iloc[0][["featureset", "model", "seed", "condition"]].tolist() == ["no_mt", "ridge", 3, "A"]


def test_collect_metrics_rejects_a_table_without_run_columns(tmp_path):
    path = tmp_path / "metrics.tsv"
    path.write_text("condition\tsubgroup\tmetric\tvalue\n")
    with pytest.raises(ConfigError, match=r"metrics\.tsv: header lacks column\(s\) \['featureset', 'model', 'seed'\]"):
        collect_metrics([path])


def test_runs_restricted_to_featuresets():
    config = {**CONFIG, "models": {**CONFIG["models"], "gears": {"featuresets": ["full"]}}}
    config["ablation"] = {"enabled": True, "d_state": [4], "featuresets": ["full"]}
    assert "gears" in runs_for(config, "cells", "full")
    assert "gears" not in runs_for(config, "cells", "no_mt")
    assert "dual_stream_mamba_dstate4" not in runs_for(config, "cells", "no_mt")
    assert "dual_stream_mamba" in runs_for(config, "cells", "no_mt")


def test_names_are_checked_against_the_registries():
    check_config(CONFIG)
    bad_source = {**CONFIG, "datasets": {"x": {"source": "ftp"}}}
    with pytest.raises(ConfigError, match=r"^datasets\.x\.source: unknown source 'ftp'; known: gears, simulated"):
        check_config(bad_source)
    no_path = {**CONFIG, "datasets": {"x": {"source": "pseudobulk"}}}
    with pytest.raises(ConfigError, match=r"^datasets\.x: source 'pseudobulk' needs \['path'\]"):
        check_config(no_path)
    bad_fs = {**CONFIG, "models": {"mean": {"featuresets": ["no_ribo"]}}}
    with pytest.raises(ConfigError, match=r"^models\.mean\.featuresets: unknown feature set\(s\) \['no_ribo'\]"):
        check_config(bad_fs)


def test_component_ablation_creates_named_runs_next_to_the_dstate_runs():
    from pathlib import Path

    import yaml

    from perturbench.workflow import COMPONENTS

    config = {**CONFIG, "ablation": {"enabled": True, "d_state": [4], "components": ["attention", "prior_only"],
                                     "featuresets": ["full"]}}
    runs = model_runs(config)
    assert runs["dual_stream_mamba_attention"] == {
        "model": "dual_stream_mamba", "params": {"epochs": 2, "encoder": "attention"}, "featuresets": ["full"]}
    assert runs["dual_stream_mamba_prior_only"]["params"] == {"epochs": 2, "network": False}
    assert "dual_stream_mamba_dstate4" in runs
    schema = yaml.safe_load((Path(__file__).parents[2] / "workflow/config/schema.yaml").read_text())
    assert schema["properties"]["ablation"]["properties"]["components"]["items"]["enum"] == list(COMPONENTS)


def test_unknown_component_is_rejected():
    config = {**CONFIG, "ablation": {"enabled": True, "components": ["no_mamba"]}}
    with pytest.raises(ValueError, match="ablation.components: unknown variant 'no_mamba'"):
        model_runs(config)
