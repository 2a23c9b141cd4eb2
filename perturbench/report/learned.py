"""Section 5 of a dataset page: what the models learned, rendered from the workflow's tables
(primary feature set; :mod:`perturbench.analysis_tables` computes them).

- Recurrent genes (``recurrent_genes.tsv``): per model, how often each gene is among the top-5
  predicted changes |p − c| across the test perturbations (all seeds), next to the same count on
  the truth. A gene in every model's list but not the truth's is a generic response the models
  carry over from training.
- Attributions (``attribution_agreement.tsv``): model × model Spearman ρ and top-K overlap of
  the per-gene attributions for the same output gene.
- GO enrichment of each model's recurrent genes (``go_enrichment.tsv``; hypergeometric, BH FDR).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perturbench.analysis_tables import TRUTH
from perturbench.report.loaders import DatasetResults

SHOWN_GENES = 8
SHOWN_TERMS = 5


def in_page_order(names: list[str], models: list[str]) -> list[str]:
    """``names`` in the page's order: ``truth``, then the report's model order, then any others."""
    rank = {m: i for i, m in enumerate([TRUTH, *models])}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))


def recurrent_rows(table: pd.DataFrame, meta: dict, models: list[str]) -> list[dict]:
    """Per model of the recurrent-genes table: n lists, "sameness" (mean k/n of its ``top`` most
    recurrent genes) and its :data:`SHOWN_GENES` most recurrent genes."""
    rows = []
    for name in in_page_order(meta["models"], models):
        t = table[table["model"] == name]
        rows.append({"model": name, "n": int(t["n"].iloc[0]) if len(t) else 0,
                     "sameness": float(np.mean(t["fraction"].head(meta["top"]))) if len(t) else float("nan"),
                     "genes": t.head(SHOWN_GENES)[["gene", "count"]].to_dict("records")})
    return rows


def attribution_section(table: pd.DataFrame, meta: dict, models: list[str]) -> dict:
    """Model × model matrices of attribution agreement, or why there are none."""
    if not meta["available"]:
        return {"available": False, "reason": meta["reason"]}
    cells = {(r.model_a, r.model_b): r for r in table.itertuples(index=False)}
    models = in_page_order(meta["models"], models)
    rows = [{"model": a, "cells": [{"spearman": float(cells[a, b].spearman), "overlap": int(cells[a, b].overlap),
                                    "k": int(cells[a, b].k)} for b in models]} for a in models]
    return {"available": True, "output_gene": meta["output_gene"], "models": models, "rows": rows,
            "k": meta["k"], "skipped": meta["skipped"]}


def enrichment_section(table: pd.DataFrame, meta: dict, models: list[str]) -> dict:
    """Top :data:`SHOWN_TERMS` GO terms over-represented among each model's recurrent genes (with
    their names when the config gives ``go.terms``), or why not available."""
    if not meta["available"]:
        return {"available": False, "reason": meta["reason"]}
    columns = ["term", "name", "k", "n", "K", "N", "p", "q"]
    queries = {q["model"]: q["genes"] for q in meta["queries"]}
    rows = [{"model": m, "query": queries[m],
             "terms": table.loc[table["model"] == m, columns].head(SHOWN_TERMS).to_dict("records")}
            for m in in_page_order(list(queries), models)]
    return {"available": True, "path": meta["go_table"], "rows": rows, "shown": SHOWN_TERMS,
            "n_background": meta["n_background"]}


def learned_section(res: DatasetResults) -> dict:
    recurrent, meta = res.analysis(res.primary, "recurrent_genes")
    return {
        "featureset": res.primary,
        "top": meta["top"],
        "recurrent": recurrent_rows(recurrent, meta, res.models),
        "attribution": attribution_section(*res.analysis(res.primary, "attribution_agreement"), res.models),
        "enrichment": enrichment_section(*res.analysis(res.primary, "go_enrichment"), res.models),
    }
