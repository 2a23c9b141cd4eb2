"""The SLURM execution profile, run against a real one-node SLURM that the tests start.

The cluster tests use the real profile ``workflow/profiles/slurm`` through a copy in tmp that
changes only what the test cluster forces (see ``test_profile``): status via ``squeue`` (the
test cluster has no accounting, real clusters do), the test partition instead of the
placeholder, no GPU for the Mamba rule (the test node has none), a short first status check and
fewer parallel jobs (two shared cores). Every Snakemake run is under ``timeout -s KILL``: a
Snakemake that loses track of its SLURM jobs waits forever and ignores SIGTERM.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests._slurm import SlurmCluster, skip_reason, start_cluster, stop_cluster

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "workflow" / "profiles"
TEST_CONFIG = REPO / "workflow" / "config" / "test.yaml"
SNAKEFILES = (REPO / "Snakefile", REPO / "workflow" / "Snakefile")
GPU_RULE = "fit_predict_mamba"

TINY_SNAKEFILE = """
rule all:
    input: "c.txt"

rule a:
    output: "a.txt"
    shell: "echo a $SLURM_JOB_ID > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "cat {input} > {output}; echo b $SLURM_JOB_ID >> {output}"

rule c:
    input: "b.txt"
    output: "c.txt"
    shell: "cat {input} > {output}; echo c $SLURM_JOB_ID >> {output}"
"""

FAILING_SNAKEFILE = """
rule all:
    input: "never.txt"

rule boom:
    output: "never.txt"
    shell: "echo about to fail >&2; exit 3"
"""


def real_snakefile() -> Path | None:
    """The workflow's Snakefile, or ``None`` while the workflow is not written yet."""
    found = [path for path in SNAKEFILES if path.exists()]
    return found[0] if found and TEST_CONFIG.exists() else None


def test_profile(dest: Path, *, partition: str) -> Path:
    """Copy the SLURM profile to ``dest`` with the test cluster's overrides; return its folder."""
    profile = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["jobs"] = 4
    profile["default-resources"]["slurm_partition"] = partition
    profile["set-resources"][GPU_RULE]["gpu"] = 0
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


test_profile.__test__ = False  # a helper named test_*, not a test


def run_snakemake(args: list[str], *, cwd: Path, timeout_s: int) -> subprocess.CompletedProcess[str]:
    """Run Snakemake in a subprocess killed (SIGKILL) after ``timeout_s`` seconds."""
    command = ["timeout", "-s", "KILL", str(timeout_s), sys.executable, "-m", "snakemake", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-8000:]}"


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


def test_profiles_name_only_workflow_rules() -> None:
    snakefile = real_snakefile()
    if snakefile is None:
        pytest.skip(f"workflow not present ({' or '.join(map(str, SNAKEFILES))} and {TEST_CONFIG})")
    result = run_snakemake(
        ["--snakefile", str(snakefile), "--configfile", str(TEST_CONFIG), "--list-rules"], cwd=REPO, timeout_s=120
    )
    assert result.returncode == 0, describe(result)
    rules = set(result.stdout.split())
    for name in ("slurm", "local"):
        profile = yaml.safe_load((PROFILES / name / "config.yaml").read_text())
        unknown = set(profile.get("set-resources", {})) - rules
        assert not unknown, f"workflow/profiles/{name}/config.yaml: set-resources names no rule of the workflow: {unknown}"


@pytest.mark.slow
def test_tiny_workflow_runs_as_slurm_jobs(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(TINY_SNAKEFILE)
    profile = test_profile(tmp_path / "profile", partition=slurm_cluster.partition)
    result = run_snakemake(["--profile", str(profile)], cwd=tmp_path, timeout_s=300)
    assert result.returncode == 0, describe(result)
    lines = (tmp_path / "c.txt").read_text().split("\n")[:3]
    assert [line.split()[0] for line in lines] == ["a", "b", "c"]
    job_ids = [line.split()[1] for line in lines]
    assert len(set(job_ids)) == 3, f"each rule must run as its own SLURM job, got job ids {job_ids}"


@pytest.mark.slow
def test_failing_rule_fails_the_run(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(FAILING_SNAKEFILE)
    profile = test_profile(tmp_path / "profile", partition=slurm_cluster.partition)
    result = run_snakemake(["--profile", str(profile)], cwd=tmp_path, timeout_s=300)
    assert result.returncode == 1, describe(result)
    assert "Error in rule boom" in result.stderr, describe(result)
    assert "SLURM status is: 'FAILED'" in result.stderr, describe(result)
    assert not (tmp_path / "never.txt").exists()


@pytest.mark.slow
def test_workflow_runs_on_slurm(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    snakefile = real_snakefile()
    if snakefile is None:
        pytest.skip(f"workflow not present ({' or '.join(map(str, SNAKEFILES))} and {TEST_CONFIG})")
    profile = test_profile(tmp_path / "profile", partition=slurm_cluster.partition)
    workdir = tmp_path / "run"
    args = ["--profile", str(profile), "--snakefile", str(snakefile), "--configfile", str(TEST_CONFIG)]
    result = run_snakemake([*args, "--directory", str(workdir)], cwd=REPO, timeout_s=600)
    assert result.returncode == 0, describe(result)
    summaries = sorted(workdir.glob("results/*/summary.tsv"))
    assert summaries, f"no results/<dataset>/summary.tsv under {workdir}\n{describe(result)}"
