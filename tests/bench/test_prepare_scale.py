"""Smoke test of the data-preparation scale benchmark on the tiny preset (no timing assertions).

Each run starts fresh processes (simulation, preparation), hence the ``slow`` mark.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from perturbench.bench.prepare_scale import COLUMNS, run

pytestmark = pytest.mark.slow
STAGES = ["simulate", "load_gears_dataset", "featureset:full", "featureset:no_mt", "featureset:no_mt_ribo",
          "prepare_total"]


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    run(out, preset="tiny", profile=True)
    return out


def test_run_writes_one_row_per_stage(bench_dir: Path) -> None:
    written = pd.read_csv(bench_dir / "prepare_scale.tsv", sep="\t")
    assert list(written.columns) == COLUMNS
    assert list(written["stage"]) == STAGES
    assert (written[["seconds", "cpu_seconds", "peak_rss_gb"]] >= 0).all().all()
    assert "load_gears_dataset" in (bench_dir / "prepare_scale_profile.txt").read_text()


def test_reuse_data_skips_simulation(bench_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    again = run(bench_dir, preset="tiny", reuse_data=True)
    assert list(again["stage"]) == STAGES[1:]
    assert "target ≤ 300 s and ≤ 8 GB" in capsys.readouterr().out


def test_unknown_preset_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"prepare_scale: unknown preset 'huge'"):
        run(tmp_path, preset="huge")
