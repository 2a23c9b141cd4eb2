"""Section 5 of a dataset page: what the models learned.

- Recurrent genes: per model, how often each gene is among the top-5 predicted changes |p − c|
  across the test perturbations (primary feature set, all seeds), next to the same count on
  the truth. A gene in every model's list but not the truth's is a generic response the models
  carry over from training.
- Attributions (``uns['attribution']`` of the prediction files): model × model Spearman ρ and
  top-K overlap of the per-gene attributions for the same output gene.
- GO enrichment of each model's recurrent genes (hypergeometric, BH FDR).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from perturbench.graphs import GraphError, read_gene2go, read_go_terms
from perturbench.report.analyses import (
    attribution_agreement,
    go_enrichment,
    recurrent_genes,
    top_changed_genes,
)
from perturbench.report.loaders import DatasetResults

TRUTH = "truth"
TOP_CHANGES = 5
SHOWN_GENES = 8
ATTRIBUTION_K = 20
SHOWN_TERMS = 5


def recurrent_tables(res: DatasetResults) -> dict[str, pd.DataFrame]:
    """Model (and ``truth``) → :func:`recurrent_genes` of its top-5 changes, pooled over seeds."""
    fs_data = res.featureset_data(res.primary)
    genes, ctrl = fs_data.genes, fs_data.ctrl
    lists: dict[str, list[list[str]]] = {TRUTH: []}
    for seed in res.seeds:
        test = sorted(res.splits[seed].test)
        lists[TRUTH] += top_changed_genes(fs_data.expression(test), ctrl, genes, top=TOP_CHANGES)
        for model in res.models:
            pred = res.prediction(res.primary, seed, model)
            if pred is not None and pred.conditions:
                lists.setdefault(model, []).extend(top_changed_genes(pred.mean, ctrl, genes, top=TOP_CHANGES))
    return {name: recurrent_genes(top) for name, top in lists.items()}


def recurrent_query(table: pd.DataFrame) -> list[str]:
    """Genes recurring in ≥ max(2, ⌈n/10⌉) of the n top lists: the set tested for GO enrichment."""
    if table.empty:
        return []
    threshold = max(2, math.ceil(0.1 * int(table["n"].iloc[0])))
    return sorted(table.loc[table["count"] >= threshold, "gene"])


def attribution_section(res: DatasetResults) -> dict:
    """Model × model matrices of attribution agreement, or why there are none."""
    found = {}
    for model in res.models:
        attr = next((a for s in res.seeds if (a := res.attribution(res.primary, s, model)) is not None), None)
        if attr is not None:
            found[model] = attr
    if len(found) < 2:
        have = ", ".join(found) or "none"
        return {"available": False,
                "reason": f"not available: fewer than two models stored attributions (models with them: {have})"}
    output_gene, _ = Counter(a["output_gene"] for a in found.values()).most_common(1)[0]
    values = {m: a["values"] for m, a in found.items() if a["output_gene"] == output_gene}
    agreement = attribution_agreement(values, k=ATTRIBUTION_K)
    cells = {(r.model_a, r.model_b): r for r in agreement.itertuples(index=False)}
    models = list(values)
    rows = [{"model": a, "cells": [{"spearman": cells[a, b].spearman, "overlap": int(cells[a, b].overlap),
                                    "k": int(cells[a, b].k)} for b in models]} for a in models]
    skipped = sorted(set(found) - set(values))
    return {"available": True, "output_gene": output_gene, "models": models, "rows": rows, "k": ATTRIBUTION_K,
            "skipped": skipped}


def enrichment_section(res: DatasetResults, tables: dict[str, pd.DataFrame], go_path: Path | None,
                       terms_path: Path | None = None) -> dict:
    """Top GO terms over-represented among each model's recurrent genes, or why not available;
    each term with its name when a term-name table (config ``go.terms``) is given."""
    if go_path is None:
        return {"available": False, "reason": "not available: the config names no GO annotation table (key go)"}
    if not go_path.exists():
        return {"available": False, "reason": f"not available: GO annotation table {go_path} not found"}
    try:
        gene2go = read_gene2go(go_path)
        names = read_go_terms(terms_path) if terms_path is not None else {}
    except GraphError as err:
        return {"available": False, "reason": f"not available: {err}"}
    background = res.featureset_data(res.primary).genes
    rows = []
    for name, table in tables.items():
        query = recurrent_query(table)
        terms = go_enrichment(query, background, gene2go).head(SHOWN_TERMS)
        terms.insert(1, "name", [names.get(t, "") for t in terms["term"]])
        rows.append({"model": name, "query": query, "terms": terms.to_dict("records")})
    return {"available": True, "path": go_path.name, "rows": rows, "shown": SHOWN_TERMS,
            "n_background": sum(1 for g in background if gene2go.get(g))}


def learned_section(res: DatasetResults, go_path: Path | None, terms_path: Path | None = None) -> dict:
    tables = recurrent_tables(res)
    recurrent = [{"model": name, "n": int(t["n"].iloc[0]) if len(t) else 0,
                  "sameness": float(np.mean(t["fraction"].head(TOP_CHANGES))) if len(t) else float("nan"),
                  "genes": t.head(SHOWN_GENES)[["gene", "count"]].to_dict("records")}
                 for name, t in tables.items()]
    return {
        "featureset": res.primary,
        "top": TOP_CHANGES,
        "recurrent": recurrent,
        "attribution": attribution_section(res),
        "enrichment": enrichment_section(res, tables, go_path, terms_path),
    }
