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
  Loadings ``λ_g``: ``stress_loading_mt`` on MT- genes, ``stress_loading_ribo`` on RPS/RPL genes,
  ``N(0, stress_leak_sd)`` elsewhere — the confounder a benchmark must expose (per-preset values
  calibrated to the Replogle-2022 shares: :mod:`perturbench.data.simconfig`).
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
of a shuffled cell order and assembled straight into CSR, so memory stays near the output size
(K562-sized preset, 160k × 5k, ~318M non-zeros: ~3.3 GB peak, ~100 CPU-seconds).
:func:`gene2go_table` derives a GO-like annotation table from ``W`` for GO-graph models.
Parameters and presets: :mod:`perturbench.data.simconfig`.
"""

from __future__ import annotations

import dataclasses
import gzip
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from perturbench.data.conditions import CTRL, canonical_condition
from perturbench.data.io import atomic_path, write_h5ad_atomic
from perturbench.data.simconfig import INTERACTION_TYPES, MT_GENES, SIMULATION_PRESETS, SimulationConfig

__all__ = ["INTERACTION_TYPES", "MT_GENES", "SIMULATION_PRESETS", "SimulationConfig", "gene2go_table",
           "propagate", "propagate_series", "simulate", "write_simulated"]
_CHUNK_CELLS = 2048  # cells per generation block; part of the definition of the output for a seed
_REGULAR, _MT, _RIBO = 0, 1, 2


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
        if not any(a in pair for pair in seen):
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
    dominant = np.array([p[int(rng.integers(2))] for p in pairs], dtype=int)
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


def _share(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask with exactly ``round(fraction · n)`` True entries at random positions."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=int(round(fraction * n)), replace=False)] = True
    return mask


def _design(cfg: SimulationConfig, rng: np.random.Generator) -> _Design:
    names, kind = _gene_names(cfg, rng)
    baseline = _baseline(cfg, kind, rng)
    regular = np.flatnonzero(kind == _REGULAR)
    by_expr = regular[np.argsort(-baseline[regular], kind="stable")]
    pool = by_expr[: max(cfg.n_perturbed_genes, regular.size // 2)]
    perturbed = rng.choice(pool, size=cfg.n_perturbed_genes, replace=False)
    is_reg = _share(perturbed.size, cfg.regulator_fraction, rng)
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
    shifted = _share(perturbed.size, cfg.stress_shift_fraction, rng)
    gene_shift = shifted * cfg.stress_shift * rng.uniform(0.5, 1.5, perturbed.size)
    loading = np.where(kind == _MT, cfg.stress_loading_mt,
                       np.where(kind == _RIBO, cfg.stress_loading_ribo,
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


def _append(buf: np.ndarray, offset: int, values: np.ndarray) -> np.ndarray:
    """Write ``values`` at ``offset``, growing ``buf`` in place (realloc: no second copy held)."""
    end = offset + values.size
    if end > buf.size:
        buf.resize(max(end, int(buf.size * 1.25)), refcheck=False)
    buf[offset:end] = values
    return buf


def _cells(cfg: SimulationConfig, d: _Design, rng: np.random.Generator) -> tuple[sp.csr_matrix, np.ndarray]:
    """All cells in a shuffled order, assembled block by block into one CSR matrix."""
    sizes = [cfg.n_ctrl_cells] + [cfg.cells_per_condition] * cfg.n_conditions
    labels = rng.permutation(np.repeat(np.arange(len(d.gears)), sizes))
    n_blocks = -(-labels.size // _CHUNK_CELLS)
    data, indices = np.empty(0, np.float32), np.empty(0, np.int32)
    row_nnz, offset = [], 0
    for start in range(0, labels.size, _CHUNK_CELLS):
        block_data, block_cols, per_row = _cell_block(cfg, d, labels[start : start + _CHUNK_CELLS], rng)
        if start == 0:  # first guess at the total size: this block's nnz times the block count
            data.resize(int(block_data.size * n_blocks * 1.05) + 1, refcheck=False)
            indices.resize(data.size, refcheck=False)
        data = _append(data, offset, block_data)
        indices = _append(indices, offset, block_cols)
        offset += block_data.size
        row_nnz.append(per_row)
    data.resize(offset, refcheck=False)
    indices.resize(offset, refcheck=False)
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(row_nnz))])
    index_dtype = np.int32 if offset < np.iinfo(np.int32).max else np.int64
    X = sp.csr_matrix((data, indices.astype(index_dtype, copy=False), indptr.astype(index_dtype)),
                      shape=(labels.size, cfg.n_genes))
    return X, labels


def _uns(cfg: SimulationConfig, d: _Design) -> dict:
    canon = np.array([canonical_condition(g) for g in d.gears])
    truth = {"conditions": canon, "stress_shift": d.stress_shift,
             "perturbed_genes": d.genes[d.perturbed], "direct_effect": d.direct,
             "baseline_log_rate": d.baseline, "stress_loading": d.loading, "W": d.W}
    if cfg.store_truth_deltas:
        truth["delta"] = d.delta
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    return {"interactions": d.interactions, "truth": truth, "simulation": settings}


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


def gene2go_table(adata: ad.AnnData, *, module_size: int = 25) -> pd.DataFrame:
    """GO-like annotations of a simulated screen in the gene2go layout (``entrez symbol go_id
    evidence ontology``), so GO-graph models get a prior about the simulated biology.

    Terms: ``SIM:REG:<j>``, regulator ``j`` and its direct targets in the true ``W`` (informative,
    like a pathway); ``SIM:MOD:<k>``, blocks of ``module_size`` genes in symbol order (the gene
    order is independent of ``W``, so these are noise, as much of real GO is); ``SIM:MITO`` and
    ``SIM:RIBO`` for MT- and RPS/RPL genes. Every gene has at least one term.
    """
    genes = adata.var_names.astype(str).to_numpy()
    W = sp.csc_matrix(adata.uns["truth"]["W"])
    rows: list[tuple[str, str]] = []
    for j in np.flatnonzero(np.diff(W.indptr)):
        members = np.concatenate([[j], W.indices[W.indptr[j] : W.indptr[j + 1]]])
        rows += [(genes[g], f"SIM:REG:{genes[j]}") for g in members]
    by_name = sorted(genes)
    for k, start in enumerate(range(0, genes.size, module_size)):
        rows += [(g, f"SIM:MOD:{k + 1:04d}") for g in by_name[start : start + module_size]]
    rows += [(g, "SIM:MITO") for g in genes if g.startswith("MT-")]
    rows += [(g, "SIM:RIBO") for g in genes if g.startswith(("RPL", "RPS"))]
    table = pd.DataFrame(rows, columns=["symbol", "go_id"]).drop_duplicates()
    entrez = {g: str(i + 1) for i, g in enumerate(genes)}
    table.insert(0, "entrez", table["symbol"].map(entrez))
    return table.assign(evidence="SIM", ontology="Process").reset_index(drop=True)


def write_simulated(config: SimulationConfig, path: str | Path, *, go_path: str | Path | None = None) -> Path:
    """Simulate ``config`` and write it atomically to ``path`` (h5ad); return the path.

    With ``go_path``, also write :func:`gene2go_table` there as gzip TSV (byte-reproducible).
    """
    path = Path(path)
    adata = simulate(config)
    write_h5ad_atomic(adata, path)
    if go_path is not None:
        text = gene2go_table(adata).to_csv(sep="\t", index=False)
        with atomic_path(go_path) as tmp, open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:  # no name/time in header
                gz.write(text.encode())
    return path
