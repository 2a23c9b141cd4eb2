"""Parameters of the Perturb-seq simulator (:mod:`perturbench.data.simulate`) and its presets.

``SIMULATION_PRESETS``: ``tiny`` (tests, seconds), ``demo`` (the demo benchmark, minutes),
``norman`` (Norman-2019-sized CRISPRa screen with combos) and ``k562`` (Replogle-K562-sized
CRISPRi screen, singles only) — the last two for scale benchmarks.

Calibration of the stress axis (``stress_loading_mt`` / ``stress_loading_ribo``, the loadings
λ_g of the MT- and RPS/RPL gene groups). Target: the published Replogle-2022 K562 signatures,
where ~14% of each knockdown's top up-regulated genes are ribosomal (``RP[SL]`` + digit) and ~9%
are ``MT-``. Measured by :func:`perturbench.report.analyses.top_up_shares`: for every
perturbation k the 50 genes with the largest δ_kg > 0 (δ_k = pseudobulk_k − control pseudobulk of
the log-normalized cells), shares pooled over conditions. Both groups load positively (stressed
knockdowns raise MT- and ribosomal transcripts together, as in the screens):

- ``demo`` (300 genes, 13 MT-, 40 RPS/RPL): λ = 0.25 / 0.12 → MT- 9.5%, ribosomal 13.5% (mean of
  seeds 0–3; seed 0: 10.4% / 14.3%). Before (λ = 0.6 / −0.3): 13.3% / 5.6%.
- ``k562`` (5,000 genes, 13 MT-, 80 RPS/RPL): λ = 0.6 / 0.22 → MT- 8.5%, ribosomal 15.1% on the
  full preset (160k cells; a 300-knockdown variant, same genes and cells per condition: 8.3% /
  13.8%). Before (λ = 0.6 / −0.3): 8.4% / 1.7% (the ribosomal axis ~8× too weak).

``tiny`` and ``norman`` keep the previous loadings (0.6 / −0.3: MT- up, RPS/RPL down).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MT_GENES = ("MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
            "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB")
INTERACTION_TYPES = ("additive", "synergistic", "buffering", "epistatic")


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of :func:`perturbench.data.simulate.simulate` (symbols: that module's docstring).

    The defaults are the demo preset."""

    n_genes: int = 300  # measured genes G, MT- and RPS/RPL included
    n_perturbed_genes: int = 24  # genes targeted by guides (measured, never MT-/RPS/RPL)
    n_singles: int = 24  # single-gene conditions: the first n_singles perturbed genes
    n_combos: int = 60  # two-gene conditions; together they cover every perturbed gene
    cells_per_condition: int = 40  # cells of each perturbation condition
    n_ctrl_cells: int = 400  # control cells
    n_mt_genes: int = 13  # MT- genes, at most the 13 mitochondrial protein-coding genes
    n_ribo_genes: int = 40  # RPS/RPL genes
    mt_fraction: float = 0.05  # share of a control cell's expected counts on MT- genes (s = 0)
    ribo_fraction: float = 0.2  # share on RPS/RPL genes (s = 0)
    baseline_sd: float = 1.2  # sd of the baseline log-rates b_g of the other genes
    grn_density: float = 0.06  # P(edge j→g) for a regulator j and a GRN target g
    regulator_fraction: float = 0.7  # share of perturbed genes that regulate others
    background_regulator_fraction: float = 0.05  # share of the other genes that regulate others
    grn_strength: float = 0.6  # edge weights |W[g, j]| ~ grn_strength · U(0.5, 1), random sign
    cascade_gain: float = 0.7  # cap on a regulator's summed |W| onto other regulators
    direct_effect: float = 1.5  # median |e_t| of a guide on its target's log-rate
    direct_effect_sd: float = 0.4  # sd of log |e_t| across targets
    activation_fraction: float = 0.5  # share of targets activated (CRISPRa) instead of knocked down
    frac_synergistic: float = 0.2  # share of combos per planted interaction type;
    frac_buffering: float = 0.2  # the remainder is additive
    frac_epistatic: float = 0.2
    synergy_range: tuple[float, float] = (1.6, 2.4)  # c of synergistic combos, U(lo, hi)
    buffering_range: tuple[float, float] = (0.2, 0.6)  # c of buffering combos
    epistasis_range: tuple[float, float] = (0.0, 0.2)  # weight c of the masked gene
    stress_loading_mt: float = 0.25  # stress loading λ_g on MT- genes (calibration: module docstring)
    stress_loading_ribo: float = 0.12  # stress loading λ_g on RPS/RPL genes
    stress_leak_sd: float = 0.05  # sd of λ_g on the other genes
    stress_shift_fraction: float = 0.3  # share of perturbed genes that shift the stress mean
    stress_shift: float = 1.0  # their shift m ~ stress_shift · U(0.5, 1.5)
    stress_depth_coupling: float = 0.1  # log library size falls by this per unit of stress
    depth_mean: float = 2000.0  # mean library size (UMIs over the measured genes)
    depth_sd: float = 0.3  # sd of log library size
    nb_theta: float = 4.0  # negative-binomial inverse dispersion θ (var = μ + μ²/θ)
    cell_type: str = "simulated"  # obs['cell_type']
    store_truth_deltas: bool = True  # store uns['truth']['delta'] (conditions × genes)
    seed: int = 0  # numpy default_rng seed

    def __post_init__(self) -> None:
        for name in ("synergy_range", "buffering_range", "epistasis_range"):  # YAML/JSON give lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _validate(self)

    @classmethod
    def tiny(cls, **overrides: object) -> SimulationConfig:
        """~1.2k cells × 100 genes, 12 singles + 16 combos: workflow tests in seconds."""
        base = cls(n_genes=100, n_perturbed_genes=12, n_singles=12, n_combos=16,
                   cells_per_condition=30, n_ctrl_cells=300, n_ribo_genes=12, grn_density=0.1,
                   frac_synergistic=0.25, frac_buffering=0.25, frac_epistatic=0.25,
                   stress_loading_mt=0.6, stress_loading_ribo=-0.3)
        return dataclasses.replace(base, **overrides)

    @classmethod
    def demo(cls, **overrides: object) -> SimulationConfig:
        """~300 genes, 24 singles + 60 combos, ~3.8k cells: the demo benchmark runs in minutes."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def norman_sized(cls, **overrides: object) -> SimulationConfig:
        """Norman-2019-sized CRISPRa screen: ~91k cells × 5,000 genes, 105 singles + 131 combos."""
        base = cls(n_genes=5000, n_perturbed_genes=112, n_singles=105, n_combos=131,
                   cells_per_condition=350, n_ctrl_cells=8400, n_ribo_genes=80,
                   grn_density=0.01, activation_fraction=1.0, depth_mean=8000.0,
                   stress_loading_mt=0.6, stress_loading_ribo=-0.3, store_truth_deltas=False)
        return dataclasses.replace(base, **overrides)

    @classmethod
    def k562_sized(cls, **overrides: object) -> SimulationConfig:
        """Replogle-K562-sized CRISPRi screen: 2,000 singles × 78 cells + 4,000 ctrl = 160k × 5,000."""
        base = cls(n_genes=5000, n_perturbed_genes=2000, n_singles=2000, n_combos=0,
                   cells_per_condition=78, n_ctrl_cells=4000, n_ribo_genes=80,
                   grn_density=0.006, regulator_fraction=0.5, activation_fraction=0.0,
                   depth_mean=6000.0, stress_loading_mt=0.6, stress_loading_ribo=0.22,
                   store_truth_deltas=False)
        return dataclasses.replace(base, **overrides)

    @property
    def n_regular_genes(self) -> int:
        """Genes that are neither MT- nor RPS/RPL (the GRN's genes)."""
        return self.n_genes - self.n_mt_genes - self.n_ribo_genes

    @property
    def n_conditions(self) -> int:
        """Perturbation conditions (ctrl excluded)."""
        return self.n_singles + self.n_combos

    @property
    def n_cells(self) -> int:
        return self.n_conditions * self.cells_per_condition + self.n_ctrl_cells


def _validate(cfg: SimulationConfig) -> None:
    def need(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise ValueError(f"SimulationConfig.{field}={getattr(cfg, field)!r}: {why}")

    for name in ("n_genes", "cells_per_condition", "n_ctrl_cells", "n_perturbed_genes"):
        need(getattr(cfg, name) >= 1, name, "must be >= 1")
    need(0 <= cfg.n_mt_genes <= len(MT_GENES), "n_mt_genes", f"must be in [0, {len(MT_GENES)}]")
    need(cfg.n_ribo_genes >= 0, "n_ribo_genes", "must be >= 0")
    need(cfg.n_perturbed_genes <= cfg.n_regular_genes, "n_perturbed_genes",
         f"exceeds the {cfg.n_regular_genes} genes that are neither MT- nor RPS/RPL")
    need(0 <= cfg.n_singles <= cfg.n_perturbed_genes, "n_singles", "must be in [0, n_perturbed_genes]")
    n_pairs = cfg.n_perturbed_genes * (cfg.n_perturbed_genes - 1) // 2
    need(0 <= cfg.n_combos <= n_pairs, "n_combos", f"must be in [0, {n_pairs}] (distinct gene pairs)")
    need(cfg.n_perturbed_genes - cfg.n_singles <= 2 * cfg.n_combos, "n_combos",
         "too few combos to cover the perturbed genes that have no single")
    for name in ("frac_synergistic", "frac_buffering", "frac_epistatic", "regulator_fraction",
                 "background_regulator_fraction", "activation_fraction", "stress_shift_fraction",
                 "grn_density", "mt_fraction", "ribo_fraction"):
        need(0.0 <= getattr(cfg, name) <= 1.0, name, "must be in [0, 1]")
    need(cfg.frac_synergistic + cfg.frac_buffering + cfg.frac_epistatic <= 1.0, "frac_epistatic",
         "frac_synergistic + frac_buffering + frac_epistatic must be <= 1")
    need(cfg.mt_fraction + cfg.ribo_fraction < 1.0, "ribo_fraction", "mt_fraction + ribo_fraction must be < 1")
    need(0.0 <= cfg.cascade_gain < 1.0, "cascade_gain", "must be in [0, 1) so cascades decay")
    for name in ("synergy_range", "buffering_range", "epistasis_range"):
        pair = getattr(cfg, name)
        need(len(pair) == 2 and 0.0 <= pair[0] <= pair[1], name, "must be (lo, hi) with 0 <= lo <= hi")
    for name in ("depth_mean", "nb_theta", "direct_effect"):
        need(getattr(cfg, name) > 0, name, "must be > 0")



SIMULATION_PRESETS: dict[str, SimulationConfig] = {
    "tiny": SimulationConfig.tiny(),
    "demo": SimulationConfig.demo(),
    "norman": SimulationConfig.norman_sized(),
    "k562": SimulationConfig.k562_sized(),
}
