"""The knowledge stream's sequence encoder over gene tokens, and the attention encoder it is ablated against.

Genes, in the configured order, are grouped ``g' = ⌈G/L⌉`` per token into ``L`` tokens (a power of
two; ``n_tokens="per_gene"`` gives ``g' = 1`` and ``L`` = the next power of two ≥ G), zero-padded
at the end, mapped to width ``D = d_model`` by one linear layer, encoded, and mapped back to genes:

- ``encoder="mamba"``: the bidirectional Mamba encoder (:class:`~perturbench.models.scan.BiMambaEncoder`);
- ``encoder="attention"``: a bidirectional (unmasked) pre-norm transformer encoder of the same token
  width ``D``, the same depth (``n_layers`` layers) and feed-forward width ``E·D`` (Mamba's inner
  width), ``attention_heads`` heads, no dropout (``torch.nn.TransformerEncoderLayer``). Tokens need
  no positional encoding: each one is built from the learned embeddings of its own genes.

``encoder="none"`` has no sequence module at all (see ``KnowledgeStream``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import Tensor, nn

from perturbench.models.scan import BiMambaEncoder

if TYPE_CHECKING:
    from perturbench.models.dual_stream_net import DualStreamConfig


def token_layout(n_tokens: int | str, n_genes: int) -> tuple[int, int]:
    """(L tokens, g' genes per token) for ``n_tokens`` (a power of two, or ``"per_gene"``)."""
    full = 1 << max(n_genes - 1, 0).bit_length()  # the smallest power of two ≥ n_genes
    length = full if n_tokens == "per_gene" else min(int(n_tokens), full)
    return length, math.ceil(n_genes / length)


class AttentionEncoder(nn.Module):
    """Bidirectional transformer encoder over a token sequence; (batch, L, D) → (batch, L, D)."""

    def __init__(self, config: DualStreamConfig):
        super().__init__()
        layer = nn.TransformerEncoderLayer(config.d_model, nhead=config.attention_heads,
                                           dim_feedforward=config.expand * config.d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, num_layers=config.n_layers, norm=nn.LayerNorm(config.d_model),
                                            enable_nested_tensor=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (batch, L, D), every token attends to every token


class TokenSequence(nn.Module):
    """Per-gene features → L tokens → sequence encoder → per-gene features (gene order restored)."""

    def __init__(self, config: DualStreamConfig, n_genes: int):
        super().__init__()
        e = config.d_embed
        self.n_tokens, self.per_token = token_layout(config.n_tokens, n_genes)
        self.tokenize = nn.Linear(self.per_token * e, config.d_model)
        self.encoder = BiMambaEncoder(config.mamba()) if config.encoder == "mamba" else AttentionEncoder(config)
        self.detokenize = nn.Linear(config.d_model, self.per_token * e)

    def forward(self, h: Tensor, order: Tensor) -> Tensor:
        b, g, e = h.shape
        pad = self.n_tokens * self.per_token - g
        seq = nn.functional.pad(h[:, order], (0, 0, 0, pad))  # (B, L·g', e), genes in sequence order
        tokens = self.tokenize(seq.reshape(b, self.n_tokens, self.per_token * e))  # (B, L, D)
        out = self.detokenize(self.encoder(tokens)).reshape(b, -1, e)[:, :g]  # (B, G, e) in sequence order
        return out.new_empty(out.shape).index_copy_(1, order, out)  # (B, G, e) in gene order
