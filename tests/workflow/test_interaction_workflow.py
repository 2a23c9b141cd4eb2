"""DAG-time helpers and CLI errors of the genetic-interaction step."""

from __future__ import annotations

from perturbench.cli import main
from perturbench.workflow import interaction_datasets, interaction_featuresets


def _config(**interactions):
    return {
        "datasets": {"sim": {"source": "simulated", "preset": "demo"},
                     "singles_only": {"source": "simulated", "preset": "k562"},
                     "no_combos": {"source": "simulated", "preset": "demo", "params": {"n_combos": 0}},
                     "norman": {"source": "norman_npz", "path": "x.npz"}},
        "featuresets": ["full", "no_mt"], "interactions": interactions,
    }


def test_interaction_datasets_skip_simulations_without_doubles():
    assert interaction_datasets(_config(enabled=True)) == ["sim", "norman"]
    assert interaction_datasets(_config(enabled=False)) == []
    assert interaction_datasets({"datasets": {"sim": {"source": "simulated"}}}) == []


def test_interaction_featuresets_default_full_and_restricted_to_configured():
    assert interaction_featuresets(_config(enabled=True)) == ["full"]
    assert interaction_featuresets(_config(enabled=True, featuresets=["no_mt", "no_mt_ribo"])) == ["no_mt"]


def test_cli_rejects_unknown_parameter_in_one_line(tmp_path, capsys):
    code = main(["interactions", "--predictions", str(tmp_path / "p.h5ad"), "--splits", str(tmp_path / "s.json"),
                 "--params", '{"top_kk": 3}', "--data-root", str(tmp_path), "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "interactions: unknown key(s) ['top_kk']" in err[0]
    assert not list(tmp_path.iterdir())
