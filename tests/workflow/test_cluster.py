"""The SLURM execution profile, run against a real one-node SLURM that the tests start.

The cluster tests use the real profile ``workflow/profiles/slurm`` through a copy in tmp that
changes only what the test cluster forces (see ``cluster_profile``): status via ``squeue`` (the
test cluster has no accounting, real clusters do), the test partition instead of the
placeholder, no GPU for the Mamba rule (the test node has none), a short first status check and
fewer parallel jobs (two shared cores). Every Snakemake run is under ``timeout -s KILL``: a
Snakemake that loses track of its SLURM jobs waits forever and ignores SIGTERM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from _slurm import SlurmCluster, skip_reason, start_cluster, stop_cluster

from perturbench.workflow import writes_curves

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "workflow" / "profiles"
TEST_CONFIG = REPO / "workflow" / "config" / "test.yaml"
SNAKEFILE = REPO / "Snakefile"
GPU_RULE = "fit_predict_mamba"

# `ok` and `boom` are independent, so they run as SLURM jobs side by side; `keep-going` (set
# in the profile) lets `ok` finish although `boom` fails.
FAILING_SNAKEFILE = """
rule all:
    input: "ok.txt", "never.txt"

rule ok:
    output: "ok.txt"
    shell: "echo $SLURM_JOB_ID > {output}"

rule boom:
    output: "never.txt"
    shell: "echo about to fail >&2; exit 3"
"""


def cluster_profile(dest: Path, *, partition: str) -> Path:
    """Copy the SLURM profile to ``dest`` with the test cluster's overrides; return its folder."""
    profile = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["jobs"] = 4
    profile["slurm-keep-successful-logs"] = True
    profile["default-resources"]["slurm_partition"] = partition
    profile["set-resources"][GPU_RULE]["gpu"] = 0
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


def cluster_config(dest: Path) -> Path:
    """The test config cut to one feature set, one baseline and one Mamba run (both fit rules).

    Each wave of SLURM jobs costs tens of seconds of status polling on two shared cores; the
    other models and feature sets add jobs, not rules, and ``tests/workflow/test_workflow.py`` runs them.
    """
    config = yaml.safe_load(TEST_CONFIG.read_text())
    mamba = [run for run in config["models"] if writes_curves(config, run)]
    other = [run for run in config["models"] if not writes_curves(config, run)]
    assert mamba and other, (
        f"{TEST_CONFIG}: models must include a Mamba run and another run, got {list(config['models'])}"
    )
    config["models"] = {run: config["models"][run] for run in (other[0], mamba[0])}
    config["featuresets"] = config["featuresets"][:1]
    dest.write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def run_snakemake(args: list[str], *, cwd: Path, timeout_s: int) -> subprocess.CompletedProcess[str]:
    """Run Snakemake, killed (SIGKILL) after ``timeout_s`` s; stdout and stderr merged into stdout.

    The interpreter's folder leads ``PATH`` so jobs (which inherit it through ``sbatch``) find the
    ``perturbench`` command of this environment.
    """
    command = ["timeout", "-s", "KILL", str(timeout_s), sys.executable, "-m", "snakemake", *args]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        command, check=False, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}; last output:\n{result.stdout[-8000:]}"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.mark.parametrize("name", ["local", "slurm"])
def test_profile_parses_and_names_only_workflow_rules(name: str, tmp_path: Path) -> None:
    profile = PROFILES / name
    args = ["--snakefile", str(SNAKEFILE), "--profile", str(profile), "--configfile", str(TEST_CONFIG)]
    result = run_snakemake([*args, "--list-rules"], cwd=tmp_path, timeout_s=120)
    assert result.returncode == 0, describe(result)
    rules = set(result.stdout.split())
    named = set(yaml.safe_load((profile / "config.yaml").read_text()).get("set-resources", {}))
    assert named <= rules, f"{profile}/config.yaml: set-resources names no rule of the workflow: {named - rules}"


@pytest.mark.slow
def test_failing_rule_fails_the_run(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(FAILING_SNAKEFILE)
    profile = cluster_profile(tmp_path / "profile", partition=slurm_cluster.partition)
    result = run_snakemake(["--profile", str(profile)], cwd=tmp_path, timeout_s=300)
    assert result.returncode == 1, describe(result)
    assert "Error in rule boom" in result.stdout, describe(result)
    assert "SLURM status is: 'FAILED'" in result.stdout, describe(result)
    assert not (tmp_path / "never.txt").exists()
    assert (tmp_path / "ok.txt").read_text().strip().isdigit(), "rule ok did not run as a SLURM job"


@pytest.mark.slow
def test_workflow_runs_on_slurm(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    profile = cluster_profile(tmp_path / "profile", partition=slurm_cluster.partition)
    config = cluster_config(tmp_path / "cluster.yaml")
    workdir = tmp_path / "run"
    args = ["--profile", str(profile), "--snakefile", str(SNAKEFILE), "--configfile", str(config)]
    result = run_snakemake([*args, "--directory", str(workdir)], cwd=REPO, timeout_s=600)
    assert result.returncode == 0, describe(result)
    for dataset in yaml.safe_load(config.read_text())["datasets"]:
        assert (workdir / "results" / dataset / "summary.tsv").is_file(), describe(result)
    gpu_rule_logs = list((workdir / ".snakemake" / "slurm_logs" / f"rule_{GPU_RULE}").rglob("*.log"))
    assert gpu_rule_logs, f"{GPU_RULE} did not run as a SLURM job\n{describe(result)}"
