"""The Snakemake workflow end to end on the tiny test config: outputs, determinism, resume, schema."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from perturbench.models.base import Prediction
from tests.conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
TEST_CONFIG = REPO / "workflow" / "config" / "test.yaml"


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's folder first on PATH, so that jobs find the
    ``perturbench`` command without an activated virtual environment (the README's test command)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    cmd = [*SNAKEMAKE, "--directory", str(workdir), "--cores", "2", *args]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                            env=venv_env())
    result.stderr = result.stdout  # snakemake 9 prints errors on stdout; keep one combined log
    return result


def write_config(path: Path, **changes) -> Path:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))
    return path


def relocate_shared_paths(config_path: Path, out: Path) -> Path:
    """Copy a config, pointing ``../shared/data`` paths at the real data folder (any workdir)."""
    from tests.conftest import shared_data_dir

    text = config_path.read_text().replace("../shared/data", str(shared_data_dir()))
    out.write_text(text)
    return out


@pytest.mark.parametrize("name", ["demo.yaml", "config.yaml", "norman.yaml", "norman_quick.yaml", "norman_components.yaml",
                                  "test.yaml"])
def test_every_config_builds_a_dag(tmp_path, name, shared_file):
    config = REPO / "workflow" / "config" / name
    if name.startswith("norman"):
        shared_file("norman2019_pseudobulk_lfc.npz")
        config = relocate_shared_paths(config, tmp_path / name)
    result = snakemake(tmp_path, "-n", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rule summarize" in result.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"datasets": {"bad;rm": {"source": "simulated"}}}, "bad;rm"),
        ({"datasets": {"x": {"source": "ftp"}}}, "ftp"),
        ({"datasets": {"x": {"source": "pseudobulk", "path": "a; rm -rf /"}}}, "a; rm -rf /"),
        ({"featuresets": ["no_ribo"]}, "no_ribo"),
        ({"seeds": [-1]}, "-1"),
        ({"models": {"ridge": {"params": {"lamda": 1.0}}}}, "models.ridge: params: unknown hyper-parameter(s) ['lamda']"),
    ],
)
def test_schema_rejects_bad_config(tmp_path, change, message):
    config = write_config(tmp_path / "bad.yaml", **change)
    result = snakemake(tmp_path, "-n", "--configfile", str(config))
    assert result.returncode != 0
    assert message in result.stderr


def metric_tables(workdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.glob("results/*/*/seed*/metrics/*.tsv"))}


@pytest.mark.slow
def test_tiny_workflow_outputs_follow_the_contract(tmp_path):
    result = snakemake(tmp_path, "--configfile", str(TEST_CONFIG))
    assert result.returncode == 0, result.stderr[-5000:]
    summary = pd.read_csv(tmp_path / "results/sim_tiny/summary.tsv", sep="\t")
    assert list(summary.columns) == ["featureset", "model", "subgroup", "metric", "mean", "ci_low", "ci_high", "n"]
    assert set(summary["featureset"]) == {"full", "no_mt"}
    assert {"control", "mean", "additive", "ridge", "dual_stream_mamba"} <= set(summary["model"])
    metrics = pd.read_csv(tmp_path / "results/sim_tiny/full/seed1/metrics/additive.tsv", sep="\t")
    assert list(metrics.columns) == ["featureset", "model", "seed", "condition", "subgroup", "metric", "value"]
    assert set(metrics["model"]) == {"additive"} and set(metrics["seed"]) == {1}
    run = Prediction.read(tmp_path / "results/sim_tiny/full/seed1/predictions/dual_stream_mamba.h5ad").run
    assert (run["run"], run["model"], run["featureset"], run["seed"]) == ("dual_stream_mamba", "dual_stream_mamba", "full", 1)
    assert run["params"]["d_state"] == 16 and run["wall_s"] > 0
    assert (tmp_path / "results/sim_tiny/full/seed1/models/dual_stream_mamba/loss_curves.tsv").stat().st_size > 0
    assert (tmp_path / "results/sim_tiny/splits/seed1.json").exists()
    calibration = pd.read_csv(tmp_path / "results/sim_tiny/calibration.tsv", sep="\t")
    assert set(calibration["model"]) == {"dual_stream_mamba"} and set(calibration["calibrated"]) == {"no", "yes"}


@pytest.mark.slow
def test_two_runs_from_scratch_give_identical_metrics(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for workdir in (first, second):
        workdir.mkdir()
        result = snakemake(workdir, "--configfile", str(TEST_CONFIG))
        assert result.returncode == 0, result.stderr[-5000:]
    tables_a, tables_b = metric_tables(first), metric_tables(second)
    assert tables_a and tables_a.keys() == tables_b.keys()
    for name, content in tables_a.items():
        assert content == tables_b[name], f"{name} differs between two runs"
    summary = "results/sim_tiny/summary.tsv"
    assert (first / summary).read_bytes() == (second / summary).read_bytes()


def _training_started(logs: Path) -> bool:
    """The signal that a Mamba job is inside its training loop: the epoch progress bar (tqdm,
    ``dual_stream_mamba: …%``) has reached its log."""
    return any("dual_stream_mamba:" in log.read_text(errors="replace")
               for log in logs.glob("*/seed1/fit_dual_stream_mamba.log"))


@pytest.mark.slow
def test_killed_during_training_then_rerun_completes(tmp_path):
    cmd = [*SNAKEMAKE, "--directory", str(tmp_path), "--cores", "1", "--configfile", str(TEST_CONFIG)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=venv_env())
    training_logs = tmp_path / "results/logs/sim_tiny"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and not _training_started(training_logs):
        time.sleep(0.2)
    assert proc.poll() is None, "workflow finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not [p for p in tmp_path.rglob("*.h5ad") if p.stat().st_size == 0]
    assert not list(tmp_path.glob("results/*/*/seed1/predictions/dual_stream_mamba.h5ad"))
    # a killed Snakemake leaves its lock behind: unlock, then rerun what was incomplete
    assert snakemake(tmp_path, "--configfile", str(TEST_CONFIG), "--unlock").returncode == 0
    result = snakemake(tmp_path, "--configfile", str(TEST_CONFIG), "--rerun-incomplete")
    assert result.returncode == 0, result.stderr[-5000:]
    assert (tmp_path / "results/sim_tiny/summary.tsv").stat().st_size > 0
    for path in tmp_path.glob("results/sim_tiny/*/seed1/predictions/*.h5ad"):
        Prediction.read(path)  # every prediction file is complete and readable
