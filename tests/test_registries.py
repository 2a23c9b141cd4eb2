"""The registries: light imports, third-party models through entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO


def run_python(code: str, *paths: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, str(REPO)])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_metrics_and_data_import_neither_torch_nor_models():
    result = run_python("""
        import sys
        import perturbench, perturbench.metrics, perturbench.data, perturbench.data.sources
        import perturbench.models.registry
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "baselines", "gears")
                       or m.startswith(("perturbench.models.dual", "perturbench.models.base")))
        print(heavy)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_third_party_model_registers_through_the_entry_point_group(tmp_path):
    dist = tmp_path / "plug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[perturbench.models]\nzero = plugmod:SPEC\n")
    (tmp_path / "plugmod.py").write_text(textwrap.dedent("""
        from perturbench.models.registry import ModelSpec
        SPEC = ModelSpec("zero_change", "baselines.simple:ControlModel", "control")
    """))
    result = run_python("""
        from perturbench.models.registry import get_model, model_spec
        print(model_spec("zero_change").kind, type(get_model("zero_change")).__name__)
    """, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["control", "ControlModel"]
