"""One base error class for user errors, caught once in the CLI: one line, exit code 1."""

from __future__ import annotations

import json

import pytest

from baselines.simple import BaselineError
from perturbench.cli import main
from perturbench.data.conditions import ConditionError
from perturbench.data.contract import DatasetError
from perturbench.data.download import ArchiveError, DownloadError
from perturbench.errors import ConfigError, MissingExtraError, PerturbenchError
from perturbench.evaluate import EvaluationError
from perturbench.graphs import GraphError
from perturbench.metrics import MetricInputError
from perturbench.models.registry import check_params
from perturbench.report.analyses import AnalysisError
from perturbench.report.loaders import ReportError
from perturbench.splits import SplitError
from perturbench.stats import StatsError
from perturbench.workflow import check_model_runs
from tests._httpserver import LoopbackServer, Reply

USER_ERRORS = [ArchiveError, AnalysisError, BaselineError, ConditionError, ConfigError, DatasetError, DownloadError,
               EvaluationError, GraphError, MetricInputError, MissingExtraError, ReportError, SplitError, StatsError]


@pytest.mark.parametrize("cls", USER_ERRORS, ids=lambda c: c.__name__)
def test_every_user_error_derives_from_the_base(cls):
    assert issubclass(cls, PerturbenchError)


def test_download_http_error_is_one_line_without_traceback(tmp_path, capsys):
    out = tmp_path / "x.archive"
    with LoopbackServer([Reply(b"<html>no</html>", status=403, content_type="text/html")]) as server:
        code = main(["download", "--url", server.url(), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("perturbench download: error: DownloadError: ") and "HTTP 403" in err
    assert str(out) in err and not out.exists()


def test_unknown_simulation_preset_names_the_field(tmp_path, capsys):
    assert main(["simulate", "--preset", "huge", "--out", str(tmp_path / "x.h5ad")]) == 1
    assert capsys.readouterr().err == (
        "perturbench simulate: error: ConfigError: preset: unknown simulation preset 'huge'; "
        "known: tiny, demo, norman, k562\n"
    )


def test_unknown_hyper_parameter_in_fit_predict_is_one_line(tmp_path, capsys):
    run = json.dumps({"model": "ridge", "params": {"lamda": 1.0}})
    code = main(["fit-predict", "--data-dir", str(tmp_path), "--split", str(tmp_path / "s.json"), "--model", "ridge",
                 "--params", run, "--log-dir", str(tmp_path / "log"), "--out", str(tmp_path / "p.h5ad")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "ConfigError: model 'ridge': params: unknown hyper-parameter(s) ['lamda']" in err


def test_check_params_names_where_and_key():
    with pytest.raises(ConfigError, match=r"^models\.fast: params: unknown hyper-parameter\(s\) \['lamda'\]; known: "):
        check_params("ridge", {"lamda": 1.0}, where="models.fast")
    with pytest.raises(ConfigError, match=r"^models\.x: model: unknown model 'ridgey'; known models: control, "):
        check_params("ridgey", {}, where="models.x")


def test_dag_check_names_the_run_and_the_key():
    config = {"models": {"ridge": None, "deep": {"model": "dual_stream_mamba", "params": {"d_stat": 4}}}}
    with pytest.raises(ConfigError, match=r"^models\.deep: params: unknown hyper-parameter\(s\) \['d_stat'\]"):
        check_model_runs(config)
    check_model_runs({"models": {"ridge": {"params": {"lam": 2.0}}}})  # a good config passes
