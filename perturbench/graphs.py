"""Gene–gene graphs: GO-term Jaccard similarity and co-expression.

A :class:`GeneGraph` is a weighted directed edge list over named genes (``src -> dst``). Builders
are implemented below; they import nothing else of ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GeneGraph:
    """Weighted edges ``src[i] -> dst[i]`` with ``weight[i]`` over ``genes`` (indices into it)."""

    genes: tuple[str, ...]
    src: np.ndarray  # (n_edges,) int64
    dst: np.ndarray  # (n_edges,) int64
    weight: np.ndarray  # (n_edges,) float64

    def __post_init__(self) -> None:
        n = len(self.genes)
        if not (len(self.src) == len(self.dst) == len(self.weight)):
            raise ValueError("GeneGraph: src, dst and weight must have the same length")
        if len(self.src) and (self.src.max() >= n or self.dst.max() >= n or min(self.src.min(), self.dst.min()) < 0):
            raise ValueError("GeneGraph: edge index out of range")
