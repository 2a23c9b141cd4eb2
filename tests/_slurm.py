"""A private one-node SLURM cluster for tests: munged, slurmctld and slurmd started by hand.

Everything lives in one temporary directory (munge key and socket, slurm.conf, state, spool,
logs, pid files) except the configuration's address: Slurm commands run inside a job see no
``SLURM_CONF`` (the jobstep plugin strips ``SLURM_*`` variables before calling ``srun``), so
``/etc/slurm/slurm.conf`` is a symlink to the temporary one while the cluster runs. A lock file
keeps two test sessions from sharing that symlink. The daemons listen on free loopback ports.

The node is declared larger than the machine (``SlurmdParameters=config_overrides``) so the
per-rule requests of the real SLURM profile can be scheduled unchanged; nothing enforces them
(``task/none``, no cgroups). Accounting is off, so Snakemake must query job status with
``squeue``. Facts behind these choices: ``shared/notes/slurm.md``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SLURM_CONF = Path("/etc/slurm/slurm.conf")
LOCK_FILE = Path("/run/lock/perturbench-test-slurm.lock")
PARTITION = "test"
REQUIRED_PROGRAMS = ("slurmctld", "slurmd", "munged", "mungekey", "sinfo", "sbatch", "squeue", "scancel")


class ClusterError(RuntimeError):
    """The test cluster could not be started; the message carries the daemons' log tails."""


@dataclass(frozen=True)
class SlurmCluster:
    """A running test cluster: its directory, partition and the lock held while it runs."""

    root: Path
    partition: str
    lock: IO[str]

    def pid_files(self) -> tuple[Path, ...]:
        """Pid files in stop order: compute daemon, controller, then munge."""
        return (self.root / "slurmd.pid", self.root / "slurmctld.pid", self.root / "munged.pid")


def skip_reason() -> str | None:
    """Why a test cluster cannot run here, or ``None`` when it can."""
    missing = [name for name in REQUIRED_PROGRAMS if shutil.which(name) is None]
    if missing:
        return f"SLURM/munge not installed (missing {', '.join(missing)}; run .ci/install-system.sh)"
    if os.geteuid() != 0:
        return f"the test SLURM cluster needs root (slurmd and the /etc/slurm symlink); uid is {os.geteuid()}"
    if SLURM_CONF.exists() and not SLURM_CONF.is_symlink():
        return f"{SLURM_CONF} is a real file (a configured SLURM); the test will not replace it"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_slurm_conf(root: Path, *, cpus: int, memory_mb: int) -> Path:
    """Write ``root/slurm.conf`` for one node on 127.0.0.1 named after this host."""
    host = socket.gethostname().split(".")[0]
    lines = [
        "ClusterName=perturbench-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge.sock'}",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "MailProg=/bin/true",
        "DefMemPerCPU=500",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    ]
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _take_lock() -> IO[str]:
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    handle = LOCK_FILE.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ClusterError(f"another test session runs the test SLURM cluster (lock {LOCK_FILE} is held)") from None
    return handle


def _start_munged(root: Path) -> None:
    """A private munged as root with its own key; ``--force`` accepts the 0700 temp directory."""
    key = root / "munge.key"
    subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
    subprocess.run(
        [
            "munged",
            "--force",
            f"--socket={root / 'munge.sock'}",
            f"--key-file={key}",
            f"--log-file={root / 'munged.log'}",
            f"--pid-file={root / 'munged.pid'}",
            f"--seed-file={root / 'munged.seed'}",
        ],
        check=True,
        capture_output=True,
    )


def _log_tails(root: Path, lines: int = 15) -> str:
    parts = []
    for name in ("munged.log", "slurmctld.log", "slurmd.log"):
        path = root / name
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
        parts.append(f"--- {path}\n" + "\n".join(text))
    return "\n".join(parts)


def _wait_idle(root: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], check=False, capture_output=True, text=True)
        state = result.stdout.strip()
        if state == "idle":
            return
        time.sleep(0.5)
    raise ClusterError(f"test SLURM node not idle after {timeout_s:.0f} s (sinfo state {state!r})\n{_log_tails(root)}")


def start_cluster(root: Path, *, cpus: int = 16, memory_mb: int = 131072, timeout_s: float = 30.0) -> SlurmCluster:
    """Start munged, slurmctld and slurmd on a fresh ``root``; return once the node is idle.

    On any failure everything already started is stopped again before the error propagates.
    """
    cluster = SlurmCluster(root=root, partition=PARTITION, lock=_take_lock())
    try:
        conf = write_slurm_conf(root, cpus=cpus, memory_mb=memory_mb)
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.unlink(missing_ok=True)
        SLURM_CONF.symlink_to(conf)
        _start_munged(root)
        for daemon in ("slurmctld", "slurmd"):
            result = subprocess.run([daemon], check=False, capture_output=True, text=True)
            if result.returncode != 0:
                raise ClusterError(f"{daemon} exited {result.returncode}: {result.stderr.strip()}\n{_log_tails(root)}")
        _wait_idle(root, timeout_s)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (daemons are re-parented, maybe to a non-reaping init) is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop_pid(pid_file: Path, timeout_s: float) -> None:
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _alive(pid):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def _cancel_jobs(timeout_s: float) -> None:
    """Cancel every job of the test cluster (all are ours) and wait for the queue to drain."""
    subprocess.run(["scancel", "--full", f"--partition={PARTITION}"], check=False, capture_output=True, timeout=30)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%i"], check=False, capture_output=True, text=True, timeout=30)
        if queue.returncode != 0 or not queue.stdout.strip():
            return
        time.sleep(0.5)


def stop_cluster(cluster: SlurmCluster) -> None:
    """Cancel leftover jobs, stop the daemons by their pids, remove the symlink, release the lock."""
    try:
        if (cluster.root / "slurmctld.pid").exists():
            _cancel_jobs(timeout_s=15.0)
        for pid_file in cluster.pid_files():
            _stop_pid(pid_file, timeout_s=10.0)
    finally:
        if SLURM_CONF.is_symlink() and SLURM_CONF.resolve() == (cluster.root / "slurm.conf").resolve():
            SLURM_CONF.unlink()
        cluster.lock.close()
