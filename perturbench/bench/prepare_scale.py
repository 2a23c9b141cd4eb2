"""Scale benchmark of data preparation on a simulated K562-sized screen (160k cells × 5k genes).

Stages, each with wall seconds, CPU seconds (user + system, all threads), peak RSS (sampled every
50 ms during the stage) and the 1-minute load average at its end (timings on a shared machine
are noisy: compare ``cpu_seconds`` with ``seconds``):

- ``simulate``: :func:`perturbench.data.simulate.write_simulated` of the preset (its own
  process; not part of the target);
- ``load_gears_dataset``: read the h5ad, canonical conditions, pseudobulk, DE genes (Welch
  t-test vs ctrl ranked as scanpy's ``rank_genes_groups`` does, by the fast path of
  :func:`perturbench.data.de.rank_de_cells`; GEARS non-dropout lists) — what the workflow's
  ``prepare`` step runs;
- ``featureset:<name>``: :func:`perturbench.data.features.apply_feature_set` for each feature set;
- ``prepare_total``: the preparation stages together; ``peak_rss_gb`` is the preparation
  process's ``ru_maxrss``. Target: ≤ 300 s and ≤ 8 GB on 2 cores.

Writes ``<out_dir>/prepare_scale.tsv`` (and, with ``profile``, ``prepare_scale_profile.txt``,
the cProfile top functions by cumulative time). Run: ``perturbench bench prepare_scale`` or
``python -m perturbench.bench.prepare_scale --out-dir results/bench [--preset k562] [--profile]``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import multiprocessing
import os
import pstats
import resource
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Self

import pandas as pd
import psutil

from perturbench.data.features import FEATURE_SETS, apply_feature_set
from perturbench.data.gears_source import load_gears_dataset
from perturbench.data.io import write_text_atomic
from perturbench.data.simulate import SIMULATION_PRESETS, write_simulated

COLUMNS = ["stage", "seconds", "cpu_seconds", "peak_rss_gb", "load_avg"]
TARGET_SECONDS = 300.0
TARGET_RSS_GB = 8.0
_GB = 1e9


class _PeakRss:
    """Samples this process's RSS in a daemon thread; :meth:`peak_gb` is the maximum since :meth:`reset`."""

    def __init__(self, interval: float = 0.05) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def reset(self) -> None:
        self._peak = self._process.memory_info().rss

    def peak_gb(self) -> float:
        return max(self._peak, self._process.memory_info().rss) / _GB

    def __enter__(self) -> Self:
        self.reset()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _maxrss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / _GB  # Linux: KiB


@contextlib.contextmanager
def _stage(name: str, rows: list[dict], rss: _PeakRss) -> Iterator[None]:
    """Time the block and append its row to ``rows``."""
    rss.reset()
    wall, cpu = time.perf_counter(), _cpu_seconds()
    yield
    rows.append({"stage": name, "seconds": time.perf_counter() - wall, "cpu_seconds": _cpu_seconds() - cpu,
                 "peak_rss_gb": rss.peak_gb(), "load_avg": os.getloadavg()[0]})


def _simulate_child(preset: str, path: str) -> list[dict]:
    rows: list[dict] = []
    with _PeakRss() as rss, _stage("simulate", rows, rss):
        write_simulated(SIMULATION_PRESETS[preset], path)
    return rows


def _prepare_stages(path: Path, rows: list[dict], rss: _PeakRss) -> None:
    with _stage("load_gears_dataset", rows, rss):
        ds = load_gears_dataset(path, name="prepare_scale")
    for featureset in FEATURE_SETS:
        with _stage(f"featureset:{featureset}", rows, rss):
            apply_feature_set(ds, featureset)


def _prepare_child(path: str, profile_path: str | None) -> list[dict]:
    rows: list[dict] = []
    profiler = cProfile.Profile() if profile_path else None
    with _PeakRss() as rss:
        if profiler:
            profiler.enable()
        _prepare_stages(Path(path), rows, rss)
        if profiler:
            profiler.disable()
    rows.append({"stage": "prepare_total", "seconds": sum(r["seconds"] for r in rows),
                 "cpu_seconds": sum(r["cpu_seconds"] for r in rows), "peak_rss_gb": _maxrss_gb(),
                 "load_avg": os.getloadavg()[0]})
    if profiler and profile_path:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        write_text_atomic(profile_path, text.getvalue())
    return rows


def _in_child(func: Callable[..., list[dict]], *args: object) -> list[dict]:
    """Run ``func(*args)`` in a fresh process, so each stage group's peak RSS is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(func, *args).result()


def run(out_dir: Path, *, preset: str = "k562", reuse_data: bool = False, profile: bool = False) -> pd.DataFrame:
    """Simulate ``preset`` to ``out_dir/sim_<preset>.h5ad``, time preparing it, write the table.

    ``reuse_data``: keep an existing simulated file (no ``simulate`` row). ``profile``: also
    write the cProfile summary of the preparation to ``out_dir/prepare_scale_profile.txt``.
    """
    if preset not in SIMULATION_PRESETS:
        raise ValueError(f"prepare_scale: unknown preset {preset!r}; known: {sorted(SIMULATION_PRESETS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"sim_{preset}.h5ad"
    rows = [] if reuse_data and data.exists() else _in_child(_simulate_child, preset, str(data))
    profile_path = str(out_dir / "prepare_scale_profile.txt") if profile else None
    rows += _in_child(_prepare_child, str(data), profile_path)
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_text_atomic(out_dir / "prepare_scale.tsv", table.to_csv(sep="\t", index=False, float_format="%.3f"))
    cfg = SIMULATION_PRESETS[preset]
    total = table.set_index("stage").loc["prepare_total"]
    print(f"prepare_scale: preset {preset!r} ({cfg.n_cells} cells × {cfg.n_genes} genes), {os.cpu_count()} CPUs")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"target ≤ {TARGET_SECONDS:.0f} s and ≤ {TARGET_RSS_GB:.0f} GB: "
          f"{'met' if total.seconds <= TARGET_SECONDS and total.peak_rss_gb <= TARGET_RSS_GB else 'NOT met'}")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("results/bench"))
    parser.add_argument("--preset", default="k562", choices=sorted(SIMULATION_PRESETS))
    parser.add_argument("--reuse-data", action="store_true", help="keep an existing simulated file")
    parser.add_argument("--profile", action="store_true", help="write a cProfile summary of the preparation")
    args = parser.parse_args(argv)
    run(args.out_dir, preset=args.preset, reuse_data=args.reuse_data, profile=args.profile)


if __name__ == "__main__":
    main()
