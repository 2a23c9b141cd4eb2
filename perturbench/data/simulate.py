"""Deterministic simulated Perturb-seq screens in GEARS format (the offline default dataset).

Generative model, natural-log scale, for cell ``c`` of condition ``k`` and gene ``g``:

- ``W`` (genes × genes, sparse, signed): ``W[g, j]`` is regulator ``j``'s effect on ``g``. Only
  regulators have out-edges, regulator→regulator edges follow a random order (a DAG) and each
  regulator's summed ``|W|`` onto other regulators is capped at ``cascade_gain < 1``, so cascades
  decay. MT- and RPS/RPL genes are never GRN targets: only the stress factor moves them.
- single target ``t`` with direct effect ``e_t`` (< 0 knockdown, > 0 activation):
  ``δ_t = (I − W)^{-1} e_t 1_t`` (the target itself and everything downstream).
- two targets ``A+B`` with planted interaction coefficient ``c``: additive ``δ_AB = δ_A + δ_B``;
  synergistic ``c(δ_A + δ_B)``, ``c > 1``; buffering ``c(δ_A + δ_B)``, ``c < 1``; epistatic
  ``δ_dom + c δ_other`` with small ``c`` (the dominant gene masks the other).
- stress ``s_c ~ N(m_k, 1)``, ``m_k`` = summed stress shift of ``k``'s targets (0 for ctrl).
  Loadings ``λ_g``: ``+stress_strength`` on MT- genes, ``−stress_strength/2`` on RPS/RPL genes,
  ``N(0, stress_leak_sd)`` elsewhere — the confounder a benchmark must expose.
- ``η_cg = b_g + δ_kg + λ_g s_c``; ``p_c = softmax(η_c)``;
  library size ``L_c = depth_mean · exp(depth_sd z_c − depth_sd²/2 − stress_depth_coupling s_c)``.
- counts ``~ NB(mean L_c p_cg, inverse dispersion nb_theta)`` as Gamma–Poisson;
  ``X = log1p(1e4 · counts / Σ_g counts)`` (scanpy ``normalize_total(1e4)`` + ``log1p``), CSR float32.

Output layout (GEARS): ``obs['condition']`` ``A+ctrl`` / ``A+B`` (screen order, not sorted) /
``ctrl``, ``obs['cell_type']``, ``obs['control']`` (1 for ctrl), ``obs['condition_name']``,
``var['gene_name']``. Ground truth in ``uns``: ``interactions`` (canonical ``condition``,
``gears_condition``, ``type``, ``coefficient``, ``dominant``), ``truth`` (canonical
``conditions`` with ``stress_shift``, ``perturbed_genes`` with ``direct_effect``,
``baseline_log_rate``, ``stress_loading``, ``W``; ``delta`` (conditions × genes, float32) only when
``store_truth_deltas``) and ``simulation`` (the config). Cells are generated in fixed-size blocks
of a shuffled cell order and assembled straight into CSR, so memory stays near the output size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from perturbench.data.conditions import CTRL, canonical_condition
from perturbench.data.io import write_h5ad_atomic

MT_GENES = ("MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
            "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB")
INTERACTION_TYPES = ("additive", "synergistic", "buffering", "epistatic")
_CHUNK_CELLS = 2048  # cells per generation block; part of the definition of the output for a seed
_REGULAR, _MT, _RIBO = 0, 1, 2


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of :func:`simulate`; the defaults are the demo preset (symbols: module docstring)."""

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
    stress_strength: float = 0.6  # stress loading λ on MT- genes (−λ/2 on RPS/RPL)
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
        _validate(self)

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
                   store_truth_deltas=False)
        return dataclasses.replace(base, **overrides)

    @classmethod
    def k562_sized(cls, **overrides: object) -> SimulationConfig:
        """Replogle-K562-sized CRISPRi screen: 2,000 singles × 78 cells + 4,000 ctrl = 160k × 5,000."""
        base = cls(n_genes=5000, n_perturbed_genes=2000, n_singles=2000, n_combos=0,
                   cells_per_condition=78, n_ctrl_cells=4000, n_ribo_genes=80,
                   grn_density=0.006, regulator_fraction=0.5, activation_fraction=0.0,
                   depth_mean=6000.0, store_truth_deltas=False)
        return dataclasses.replace(base, **overrides)

    @property
    def n_regular_genes(self) -> int:
        return self.n_genes - self.n_mt_genes - self.n_ribo_genes


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
        lo, hi = getattr(cfg, name)
        need(0.0 <= lo <= hi, name, "must be (lo, hi) with 0 <= lo <= hi")
    for name in ("depth_mean", "nb_theta", "direct_effect"):
        need(getattr(cfg, name) > 0, name, "must be > 0")


@dataclass(frozen=True)
class _Design:
    """Everything about a screen except its cells."""

    genes: np.ndarray  # gene symbols, shape (G,)
    kind: np.ndarray  # _REGULAR / _MT / _RIBO per gene
    baseline: np.ndarray  # b_g, log-rates whose exp sums to 1
    loading: np.ndarray  # λ_g
    perturbed: np.ndarray  # gene indices of the perturbed genes, screen order
    direct: np.ndarray  # e_t per perturbed gene
    W: sp.csr_matrix
    gears: list[str]  # GEARS condition names, ctrl first
    delta: np.ndarray  # (K, G) float32, row 0 = ctrl = 0
    stress_shift: np.ndarray  # m_k, shape (K,)
    interactions: dict[str, np.ndarray]


def _gene_names(cfg: SimulationConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled gene symbols and their kinds: MT-…, RPL<i>/RPS<i>, and G<number> for the rest."""
    ribo = [f"{'RPL' if i % 2 == 0 else 'RPS'}{i // 2 + 1}" for i in range(cfg.n_ribo_genes)]
    width = max(4, len(str(cfg.n_regular_genes)))
    regular = [f"G{i + 1:0{width}d}" for i in range(cfg.n_regular_genes)]
    names = np.array(regular + list(MT_GENES[: cfg.n_mt_genes]) + ribo)
    kind = np.repeat([_REGULAR, _MT, _RIBO], [cfg.n_regular_genes, cfg.n_mt_genes, cfg.n_ribo_genes])
    order = rng.permutation(cfg.n_genes)
    return names[order], kind[order]


def _baseline(cfg: SimulationConfig, kind: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Log-rates ``b`` with ``Σ exp(b) = 1`` and the MT-/ribosomal shares of the config."""
    b = np.empty(kind.size)
    shares = {_REGULAR: 1.0 - cfg.mt_fraction - cfg.ribo_fraction, _MT: cfg.mt_fraction,
              _RIBO: cfg.ribo_fraction}
    for k, share in shares.items():
        idx = np.flatnonzero(kind == k)
        raw = rng.normal(0.0, cfg.baseline_sd if k == _REGULAR else 0.5, idx.size)
        b[idx] = raw - np.log(np.exp(raw).sum()) + np.log(max(share, 1e-12))
    return b


def _grn(cfg: SimulationConfig, regulators: np.ndarray, targets: np.ndarray,
         rng: np.random.Generator) -> sp.csr_matrix:
    """Sparse signed ``W`` (rows: targets); regulator→regulator edges only forward in a random order."""
    rank = np.full(cfg.n_genes, -1)
    rank[regulators] = rng.permutation(regulators.size)
    mask = rng.random((regulators.size, targets.size)) < cfg.grn_density
    tgt_rank = rank[targets]
    mask &= (tgt_rank < 0) | (tgt_rank[None, :] > rank[regulators][:, None])
    src_i, tgt_i = np.nonzero(mask)
    weight = cfg.grn_strength * rng.uniform(0.5, 1.0, src_i.size) * rng.choice([-1.0, 1.0], src_i.size)
    src, tgt = regulators[src_i], targets[tgt_i]
    onto_reg = rank[tgt] >= 0
    gain = np.bincount(src[onto_reg], np.abs(weight[onto_reg]), minlength=cfg.n_genes)
    scale = np.minimum(1.0, cfg.cascade_gain / np.maximum(gain, 1e-12))
    weight[onto_reg] *= scale[src[onto_reg]]
    return sp.csr_matrix((weight, (tgt, src)), shape=(cfg.n_genes, cfg.n_genes))


def propagate(W: sp.spmatrix, effects: np.ndarray) -> np.ndarray:
    """Total effects ``(I − W)^{-1} E`` for direct-effect columns ``E`` (genes × n), by sparse LU."""
    lu = spla.splu(sp.csc_matrix(sp.identity(W.shape[0]) - W))
    return lu.solve(np.asarray(effects, dtype=np.float64))


def propagate_series(W: sp.spmatrix, effects: np.ndarray, *, max_steps: int = 10_000) -> np.ndarray:
    """Slow reference for :func:`propagate`: ``Σ_k W^k E`` summed until the terms vanish."""
    total = term = np.asarray(effects, dtype=np.float64)
    for _ in range(max_steps):
        term = W @ term
        if not np.any(term):
            return total
        total = total + term
    raise RuntimeError(f"propagate_series: no convergence in {max_steps} steps (W is not nilpotent)")


def _combos(cfg: SimulationConfig, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Distinct ordered pairs of perturbed-gene positions covering every gene without a single."""
    n, pairs, seen = cfg.n_perturbed_genes, [], set()
    for a in range(cfg.n_singles, n):
        if a not in {x for p in pairs for x in p}:
            b = int(rng.choice(np.delete(np.arange(n), a)))
            pairs.append((a, b))
            seen.add(frozenset((a, b)))
    while len(pairs) < cfg.n_combos:
        a, b = (int(x) for x in rng.choice(n, size=2, replace=False))
        if frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            pairs.append((a, b))
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order]


def _interactions(cfg: SimulationConfig, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Planted type and coefficient ``c`` of each of ``n`` combos (exact shares, shuffled)."""
    fracs = (cfg.frac_synergistic, cfg.frac_buffering, cfg.frac_epistatic)
    counts = [int(round(f * n)) for f in fracs]
    counts = [min(c, n - sum(counts[:i])) for i, c in enumerate(counts)]
    types = np.array(["synergistic"] * counts[0] + ["buffering"] * counts[1]
                     + ["epistatic"] * counts[2] + ["additive"] * (n - sum(counts)), dtype=object)
    types = types[rng.permutation(n)]
    ranges = {"synergistic": cfg.synergy_range, "buffering": cfg.buffering_range,
              "epistatic": cfg.epistasis_range, "additive": (1.0, 1.0)}
    coef = np.array([rng.uniform(*ranges[t]) for t in types], dtype=np.float64)
    return types.astype(str), coef


def _combo_deltas(cfg: SimulationConfig, single: np.ndarray, genes: np.ndarray,
                  rng: np.random.Generator) -> tuple[list[tuple[int, int]], np.ndarray, dict]:
    """Combo pairs, their deltas ``(n_combos, G)`` and the interaction table."""
    pairs = _combos(cfg, rng)
    types, coef = _interactions(cfg, len(pairs), rng)
    dominant = np.array([p[int(rng.integers(2))] for p in pairs], dtype=int).reshape(-1)
    out = np.empty((len(pairs), single.shape[1]))
    for i, (a, b) in enumerate(pairs):
        if types[i] == "epistatic":
            dom, other = (a, b) if dominant[i] == a else (b, a)
            out[i] = single[dom] + coef[i] * single[other]
        else:
            out[i] = coef[i] * (single[a] + single[b])
    gears = [f"{genes[a]}+{genes[b]}" for a, b in pairs]
    table = {"condition": np.array([canonical_condition(g) for g in gears]),
             "gears_condition": np.array(gears), "type": types, "coefficient": coef,
             "dominant": np.array([genes[d] if t == "epistatic" else "" for d, t in zip(dominant, types)])}
    return pairs, out, table


def _design(cfg: SimulationConfig, rng: np.random.Generator) -> _Design:
    names, kind = _gene_names(cfg, rng)
    baseline = _baseline(cfg, kind, rng)
    regular = np.flatnonzero(kind == _REGULAR)
    by_expr = regular[np.argsort(-baseline[regular], kind="stable")]
    pool = by_expr[: max(cfg.n_perturbed_genes, regular.size // 2)]
    perturbed = rng.choice(pool, size=cfg.n_perturbed_genes, replace=False)
    is_reg = rng.random(perturbed.size) < cfg.regulator_fraction
    others = np.setdiff1d(regular, perturbed)
    background = others[rng.random(others.size) < cfg.background_regulator_fraction]
    W = _grn(cfg, np.concatenate([perturbed[is_reg], background]), regular, rng)
    sign = np.where(rng.random(perturbed.size) < cfg.activation_fraction, 1.0, -1.0)
    direct = sign * cfg.direct_effect * np.exp(cfg.direct_effect_sd * rng.standard_normal(perturbed.size))
    effects = np.zeros((cfg.n_genes, perturbed.size))
    effects[perturbed, np.arange(perturbed.size)] = direct
    single = propagate(W, effects).T  # (n_perturbed, G)
    pert_names = names[perturbed]
    pairs, combo_delta, table = _combo_deltas(cfg, single, pert_names, rng)
    shifted = rng.random(perturbed.size) < cfg.stress_shift_fraction
    gene_shift = shifted * cfg.stress_shift * rng.uniform(0.5, 1.5, perturbed.size)
    loading = np.where(kind == _MT, cfg.stress_strength,
                       np.where(kind == _RIBO, -cfg.stress_strength / 2,
                                rng.normal(0.0, cfg.stress_leak_sd, cfg.n_genes)))
    gears = [CTRL] + [f"{g}+ctrl" for g in pert_names[: cfg.n_singles]] + table["gears_condition"].tolist()
    delta = np.vstack([np.zeros((1, cfg.n_genes)), single[: cfg.n_singles], combo_delta]).astype(np.float32)
    shift = np.concatenate([[0.0], gene_shift[: cfg.n_singles],
                            [gene_shift[a] + gene_shift[b] for a, b in pairs]])
    return _Design(names, kind, baseline, loading, perturbed, direct, W, gears, delta, shift, table)


def _cell_block(cfg: SimulationConfig, d: _Design, labels: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block of cells as CSR parts (data float32, indices int32, per-row counts)."""
    stress = d.stress_shift[labels] + rng.standard_normal(labels.size)
    eta = d.baseline[None, :] + d.delta[labels] + stress[:, None] * d.loading[None, :]
    eta -= eta.max(axis=1, keepdims=True)
    p = np.exp(eta)
    p /= p.sum(axis=1, keepdims=True)
    z = rng.standard_normal(labels.size)
    depth = cfg.depth_mean * np.exp(cfg.depth_sd * z - cfg.depth_sd**2 / 2 - cfg.stress_depth_coupling * stress)
    p *= depth[:, None]
    p *= rng.standard_gamma(cfg.nb_theta, size=p.shape) / cfg.nb_theta
    counts = rng.poisson(p)
    del p, eta
    total = np.maximum(counts.sum(axis=1), 1)
    rows, cols = np.nonzero(counts)
    data = np.log1p(counts[rows, cols] * (1e4 / total[rows])).astype(np.float32)
    return data, cols.astype(np.int32), np.bincount(rows, minlength=labels.size)


def _cells(cfg: SimulationConfig, d: _Design, rng: np.random.Generator) -> tuple[sp.csr_matrix, np.ndarray]:
    """All cells in a shuffled order, assembled block by block into one CSR matrix."""
    sizes = [cfg.n_ctrl_cells] + [cfg.cells_per_condition] * (len(d.gears) - 1)
    labels = rng.permutation(np.repeat(np.arange(len(d.gears)), sizes))
    parts, row_nnz = [], []
    for start in range(0, labels.size, _CHUNK_CELLS):
        data, cols, per_row = _cell_block(cfg, d, labels[start : start + _CHUNK_CELLS], rng)
        parts.append((data, cols))
        row_nnz.append(per_row)
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(row_nnz))]).astype(np.int64)
    data = np.empty(indptr[-1], dtype=np.float32)
    indices = np.empty(indptr[-1], dtype=np.int32)
    offset = 0
    while parts:
        block_data, block_cols = parts.pop(0)
        data[offset : offset + block_data.size] = block_data
        indices[offset : offset + block_data.size] = block_cols
        offset += block_data.size
    if indptr[-1] < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(labels.size, cfg.n_genes)), labels


def _uns(cfg: SimulationConfig, d: _Design) -> dict:
    canon = np.array([canonical_condition(g) for g in d.gears])
    truth = {"conditions": canon, "stress_shift": d.stress_shift,
             "perturbed_genes": d.genes[d.perturbed], "direct_effect": d.direct,
             "baseline_log_rate": d.baseline, "stress_loading": d.loading, "W": d.W}
    if cfg.store_truth_deltas:
        truth["delta"] = d.delta
    return {"interactions": d.interactions, "truth": truth, "simulation": dataclasses.asdict(cfg)}


def simulate(config: SimulationConfig) -> ad.AnnData:
    """Simulate one Perturb-seq screen as a GEARS-format cell-level AnnData (see module docstring).

    Deterministic: the same config (seed included) gives byte-identical ``X``.
    """
    rng = np.random.default_rng(config.seed)
    design = _design(config, rng)
    X, labels = _cells(config, design, rng)
    gears = np.array(design.gears)[labels]
    ctrl = labels == 0
    names = pd.Series(gears)
    obs = pd.DataFrame(
        {"condition": pd.Categorical(gears, categories=design.gears),
         "cell_type": pd.Categorical([config.cell_type] * labels.size),
         "control": ctrl.astype(np.int64),
         "condition_name": pd.Categorical(config.cell_type + "_" + names + np.where(ctrl, "_1", "_1+1"))},
        index=pd.Index([f"cell{i:07d}" for i in range(labels.size)]))
    var = pd.DataFrame({"gene_name": design.genes}, index=pd.Index(design.genes))
    return ad.AnnData(X=X, obs=obs, var=var, uns=_uns(config, design))


def write_simulated(config: SimulationConfig, path: str | Path) -> Path:
    """Simulate ``config`` and write it atomically to ``path`` (h5ad); return the path."""
    path = Path(path)
    write_h5ad_atomic(simulate(config), path)
    return path


SIMULATION_PRESETS: dict[str, SimulationConfig] = {
    "demo": SimulationConfig.demo(),
    "norman": SimulationConfig.norman_sized(),
    "k562": SimulationConfig.k562_sized(),
}
