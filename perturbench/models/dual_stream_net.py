"""The dual-stream Mamba network (Li & Liu, "Predicting Multigene Transcriptional Outcomes Based on
Dual-Stream Mamba Neural Network") as a tree of ``nn.Module``s, every one built in ``__init__``.

- Data stream: torch-geometric ``GraphConv`` (own-node + neighbour-mean weights) over the
  co-expression graph on per-gene inputs ``[input expression x, prior change]`` → VAE
  (genes pooled into K learned mixtures, encoder, reparameterised latent ``z``, decoder, unpooled
  back to genes; a skip around the VAE keeps gene-level detail); its KL term enters the loss.
- Knowledge stream: learnable gene embeddings propagated over the co-expression graph and
  perturbation embeddings over the GO graph (``GCNConv``); the summed embeddings of the perturbed
  genes (all, and those whose effect the prior lacks) are mapped by an MLP and added to every gene
  token (GEARS-style), the perturbed genes' own tokens get learned flags. Genes, in the configured
  order, are grouped ``⌈G/L⌉`` per token into ``L`` (a power of two) tokens, zero-padded at the
  end, for a bidirectional Mamba encoder whose output is added back to the gene tokens
  (:mod:`perturbench.models.sequence`).
- Fusion (gate or cross-attention) → a shared plus a per-gene linear readout of the change ``μ``
  (added to the prior change computed from training data) and of ``log σ²`` (Kendall & Gal 2017).

Component ablations are configuration switches (:class:`DualStreamConfig`), each removing one part
of the paper's architecture: ``encoder`` (``"attention"``: a transformer of the same width and depth
over the same tokens; ``"none"``: no sequence encoder), ``data_stream=False`` (no VAE stream; the
fusion passes the knowledge stream through), ``graphs=False`` (no graph convolution anywhere: the
embeddings stay unpropagated and the data stream embeds each gene's inputs with one linear layer),
``prior`` (``"none"``: the network predicts the whole change), ``n_tokens`` (token resolution, down
to one gene per token) and ``network=False`` (the prior alone, see ``DualStreamMambaModel``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, GraphConv

from perturbench.models.scan import MambaStreamConfig, ScanBackend
from perturbench.models.sequence import TokenSequence

_POSITIVE = ("d_model", "d_state", "d_conv", "expand", "n_layers", "d_embed", "gnn_layers", "latent_dim",
             "latent_tokens", "patience", "batch_size", "cell_batch_size", "passes_per_epoch", "attention_heads")
CPU_CELLS_PER_EPOCH = 1024  # cells_per_epoch 'auto' on CPU: the default budget
_CHOICES = {"gene_order": ("spectral", "dataset"), "fusion": ("gate", "cross_attention"),
            "prior": ("additive", "ridge", "none"), "encoder": ("mamba", "attention", "none"),
            "calibration": ("none", "scale", "select")}
_SWITCHES = ("data_stream", "graphs", "network", "bidirectional")
Encoder = Literal["mamba", "attention", "none"]


@dataclass
class DualStreamConfig:
    """Hyper-parameters (paper symbols in comments). Seed and device come from ``FitContext``."""

    # knowledge stream: Mamba encoder over the gene sequence (Gu & Dao 2023 symbols)
    d_model: int = 16  # D: Mamba token width
    d_state: int = 16  # N: SSM state size; the paper's ablation compares {4, 16, 128}
    d_conv: int = 4  # causal depthwise convolution width inside each Mamba block
    expand: int = 2  # E: inner width ED = E·D
    n_layers: int = 1  # Mamba blocks per direction
    bidirectional: bool = True  # forward + reversed scan, summed
    n_tokens: int | Literal["per_gene"] = 64  # L: genes grouped into L tokens (a power of two), or one gene per token
    gene_order: Literal["spectral", "dataset"] = "spectral"  # Fiedler order of the co-expression graph, or as given
    scan_backend: ScanBackend = "auto"  # selective-scan backend (perturbench.models.scan)
    # component ablations (module docstring): the paper's model is mamba / True / True / a prior / True
    encoder: Encoder = "mamba"  # sequence encoder over the gene tokens: Mamba, attention of equal width, or none
    attention_heads: int = 2  # heads of the attention encoder (must divide d_model)
    data_stream: bool = True  # the VAE data stream; False: fusion passes the knowledge stream
    graphs: bool = True  # graph convolutions over the co-expression and GO graphs
    network: bool = True  # False: no network, predictions are the prior (the "prior_only" ablation)
    # graphs and embeddings
    d_embed: int = 16  # width of gene / perturbation embeddings and GCN features
    gnn_layers: int = 1  # GCNConv layers per graph
    coexpr_top_k: int = 20  # neighbours per gene in the co-expression graph
    coexpr_min_abs_corr: float = 0.3  # |Pearson r| threshold of a co-expression edge
    # data stream: VAE
    latent_dim: int = 8  # dim of z
    latent_tokens: int = 4  # K: genes are pooled into K learned mixtures before the encoder
    # fusion and output
    fusion: Literal["gate", "cross_attention"] = "gate"
    prior_dropout: float = 0.25  # training: chance a seen target's single effect is hidden from the prior
    # prior effects: ridge on every training condition, the training singles, or none
    prior: Literal["additive", "ridge", "none"] = "ridge"
    prior_lambda: float = 0.1  # λ of the ridge prior
    # loss: w_mse·mean|y−μ|^(2+γ) + w_kl·KL + w_nll·mean(½ log σ² + (y−μ)²/(2σ²))
    w_mse: float = 1.0
    autofocus_gamma: float = 0.0  # γ of GEARS' autofocus loss; 0 gives the plain MSE
    w_kl: float = 1e-3
    w_nll: float = 0.1
    # optimisation: Adam + ReduceLROnPlateau + early stopping on validation loss
    lr: float = 1e-3
    betas: tuple[float, float] = field(default=(0.9, 0.999))
    weight_decay: float = 5e-4
    lr_factor: float = 0.5  # ReduceLROnPlateau factor
    lr_patience: int = 2  # epochs without improvement before the learning rate is cut
    epochs: int = 20
    patience: int = 5  # early stopping: epochs without validation improvement
    batch_size: int = 4  # pseudobulk training: conditions per optimiser step
    cell_batch_size: int = 32  # cell-level training: (control cell, perturbed cell) pairs per step
    cells_per_epoch: int | Literal["auto"] = 1024  # cell-level training: pairs per epoch; auto: all on CUDA
    autocast_bf16: bool = False  # CUDA only: forward pass and loss under torch.autocast(bfloat16)
    passes_per_epoch: int = 1  # pseudobulk training: passes over the training conditions per epoch
    head_init: float = 0.01  # std of the per-gene readout weights at initialisation (× 1/√d_embed)
    # σ as an error bar of the predicted mean, fitted on validation conditions (perturbench.models.calibration)
    calibration: Literal["none", "scale", "select"] = "select"

    def __post_init__(self) -> None:
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ValueError(f"DualStreamConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.cells_per_epoch != "auto" and (isinstance(self.cells_per_epoch, str) or self.cells_per_epoch < 1):
            raise ValueError(f"DualStreamConfig.cells_per_epoch must be >= 1 or 'auto', got {self.cells_per_epoch!r}")
        if self.epochs < 0:
            raise ValueError(f"DualStreamConfig.epochs must be >= 0, got {self.epochs!r}")
        self._check_choices()
        if not self.prior_lambda > 0:
            raise ValueError(f"DualStreamConfig.prior_lambda must be > 0, got {self.prior_lambda!r}")
        if not 0.0 <= self.prior_dropout <= 1.0:
            raise ValueError(f"DualStreamConfig.prior_dropout must be in [0, 1], got {self.prior_dropout!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def epoch_cells(self, n_train_cells: int, device_type: str) -> int:
        """Pairs drawn per epoch: ``cells_per_epoch``, or with ``'auto'`` every training cell on
        CUDA and :data:`CPU_CELLS_PER_EPOCH` elsewhere; never more than ``n_train_cells``."""
        if self.cells_per_epoch == "auto":
            wanted = n_train_cells if device_type == "cuda" else CPU_CELLS_PER_EPOCH
        else:
            wanted = int(self.cells_per_epoch)
        return min(wanted, n_train_cells)

    def _check_choices(self) -> None:
        tokens = self.n_tokens
        if tokens != "per_gene" and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1
                                     or tokens & (tokens - 1)):
            raise ValueError(f"DualStreamConfig.n_tokens must be a power of two or 'per_gene', got {tokens!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"DualStreamConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in _SWITCHES:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"DualStreamConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.encoder == "attention" and self.d_model % self.attention_heads:
            raise ValueError(f"DualStreamConfig.attention_heads ({self.attention_heads}) must divide "
                             f"d_model ({self.d_model})")

    def mamba(self) -> MambaStreamConfig:
        return MambaStreamConfig(
            d_model=self.d_model,
            n_layers=self.n_layers,
            d_state=self.d_state,
            d_conv=self.d_conv,
            expand=self.expand,
            bidirectional=self.bidirectional,
            backend=self.scan_backend,
        )


@dataclass(frozen=True)
class NetGraphs:
    """Fixed inputs of the network: graphs (edge_index (2, E), edge_weight (E,)) and the gene order."""

    n_genes: int
    n_vocab: int  # perturbation vocabulary (all target genes known at fit time)
    gene_edges: Tensor
    gene_weight: Tensor
    pert_edges: Tensor
    pert_weight: Tensor
    order: Tensor  # (n_genes,) permutation: token sequence position → gene index


@dataclass
class NetInput:
    """One batch. ``pert``/``hidden`` are multi-hot over the vocabulary: all targets, and the
    targets whose single effect is *not* in ``prior``; the flags mark the same for measured genes."""

    x: Tensor  # (B, G) input expression (a control cell, the control pseudobulk, or zeros)
    prior: Tensor  # (B, G) prior change from training data
    pert: Tensor  # (B, V)
    hidden: Tensor  # (B, V)
    target_flag: Tensor  # (B, G)
    hidden_flag: Tensor  # (B, G)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> NetInput:
        return NetInput(*(getattr(self, f.name).to(device, dtype) for f in fields(self)))


def _gcn_stack(n_in: int, width: int, n_layers: int, *, root: bool = False) -> nn.ModuleList:
    """``GCNConv`` layers (normalisation cached: the graphs are fixed), or ``GraphConv``
    (own-node weight: W₁x_i + W₂·mean_j w_ji x_j) when ``root``."""

    def conv(i: int) -> nn.Module:
        n = n_in if i == 0 else width
        return GraphConv(n, width, aggr="mean") if root else GCNConv(n, width, cached=True)

    return nn.ModuleList(conv(i) for i in range(n_layers))


def _propagate(convs: nn.ModuleList, h: Tensor, edges: Tensor, weight: Tensor) -> Tensor:
    for i, conv in enumerate(convs):
        out = torch.relu(conv(h, edges, weight))  # (..., nodes, width)
        h = out if i == 0 and out.shape[-1] != h.shape[-1] else h + out
    return h


class DataStream(nn.Module):
    """Graph-convolution embedding of the per-gene inputs → VAE. Returns per-gene features (the embedding plus
    the decoded latent: the skip keeps gene-level detail past the K-token bottleneck), the decoded
    latent tokens and the KL term."""

    def __init__(self, config: DualStreamConfig, n_genes: int):
        super().__init__()
        e, k, z = config.d_embed, config.latent_tokens, config.latent_dim
        # graphs=False: each gene's inputs embedded on their own, W[x_g, prior_g] + b
        self.convs = _gcn_stack(2, e, config.gnn_layers, root=True) if config.graphs else None
        self.embed = None if config.graphs else nn.Linear(2, e)
        self.pool = nn.Parameter(torch.randn(n_genes, k) / math.sqrt(n_genes))
        self.encoder = nn.Sequential(nn.Linear(k * e, 2 * z), nn.ReLU(), nn.Linear(2 * z, 2 * z))
        self.decoder = nn.Sequential(nn.Linear(z, k * e), nn.ReLU(), nn.Linear(k * e, k * e))
        self.unpool = nn.Parameter(torch.randn(n_genes, k) / math.sqrt(k))
        self.k, self.e = k, e

    def forward(self, inp: NetInput, graphs: NetGraphs) -> tuple[Tensor, Tensor, Tensor]:
        feats = torch.stack([inp.x, inp.prior], dim=-1)  # (B, G, 2)
        if self.convs is None:
            h = torch.relu(self.embed(feats))  # (B, G, e)
        else:
            h = _propagate(self.convs, feats, graphs.gene_edges, graphs.gene_weight)  # (B, G, e)
        pooled = torch.einsum("bge,gk->bke", h, self.pool)  # (B, K, e)
        mu, logvar = self.encoder(pooled.flatten(1)).chunk(2, dim=-1)  # (B, z), (B, z)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu  # (B, z)
        tokens = self.decoder(z).view(-1, self.k, self.e)  # (B, K, e)
        per_gene = h + torch.einsum("bke,gk->bge", tokens, self.unpool)  # (B, G, e): skip + decoded latent
        kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=-1))  # ()
        return per_gene, tokens, kl


class KnowledgeStream(nn.Module):
    """Graph-propagated gene and perturbation embeddings → injected gene tokens → sequence encoder
    (``encoder="none"``: none; ``graphs=False``: the embeddings are used unpropagated)."""

    def __init__(self, config: DualStreamConfig, graphs: NetGraphs):
        super().__init__()
        e = config.d_embed
        self.gene_table = nn.Parameter(torch.randn(graphs.n_genes, e))
        self.pert_table = nn.Parameter(0.01 * torch.randn(graphs.n_vocab, e))  # untrained targets stay near 0
        depth = config.gnn_layers if config.graphs else 0  # no layers: _propagate is the identity
        self.gene_convs = _gcn_stack(e, e, depth)
        self.pert_convs = _gcn_stack(e, e, depth)
        self.inject = nn.Sequential(nn.Linear(2 * e, e), nn.ReLU(), nn.Linear(e, e))
        self.flags = nn.Parameter(torch.randn(2, e))  # target gene, target hidden from the prior
        self.sequence = None if config.encoder == "none" else TokenSequence(config, graphs.n_genes)

    def forward(self, inp: NetInput, graphs: NetGraphs) -> Tensor:
        genes = _propagate(self.gene_convs, self.gene_table, graphs.gene_edges, graphs.gene_weight)  # (G, e)
        perts = _propagate(self.pert_convs, self.pert_table, graphs.pert_edges, graphs.pert_weight)  # (V, e)
        p = torch.cat([inp.pert @ perts, inp.hidden @ perts], dim=-1)  # (B, 2e)
        flags = torch.stack([inp.target_flag, inp.hidden_flag], dim=-1) @ self.flags  # (B, G, e)
        h = genes + self.inject(p)[:, None, :] + flags  # (B, G, e)
        return h if self.sequence is None else h + self.sequence(h, graphs.order)  # (B, G, e)


class GateFusion(nn.Module):
    """``f = s ⊙ k + (1 − s) ⊙ d`` with ``s = σ(W[k; d] + b)`` per gene."""

    def __init__(self, config: DualStreamConfig):
        super().__init__()
        self.gate = nn.Linear(2 * config.d_embed, config.d_embed)

    def forward(self, know: Tensor, data_genes: Tensor, data_tokens: Tensor) -> Tensor:
        s = torch.sigmoid(self.gate(torch.cat([know, data_genes], dim=-1)))  # (B, G, e)
        return s * know + (1 - s) * data_genes  # (B, G, e)


class CrossAttentionFusion(nn.Module):
    """Gene tokens of the knowledge stream attend to the K latent tokens of the data stream;
    ``f = LayerNorm(k + d + Attention(q = k, kv = latent tokens))`` keeps the per-gene data features."""

    def __init__(self, config: DualStreamConfig):
        super().__init__()
        self.attend = nn.MultiheadAttention(config.d_embed, num_heads=1, batch_first=True)
        self.norm = nn.LayerNorm(config.d_embed)

    def forward(self, know: Tensor, data_genes: Tensor, data_tokens: Tensor) -> Tensor:
        mixed, _ = self.attend(know, data_tokens, data_tokens, need_weights=False)  # (B, G, e)
        return self.norm(know + data_genes + mixed)  # (B, G, e)


_FUSIONS = {"gate": GateFusion, "cross_attention": CrossAttentionFusion}
_LOGVAR_BOUND = 10.0  # |log σ²| < 10: genes with exactly-zero errors (dropouts) cannot drive σ² → 0
_GRAPH_TENSORS = ("gene_edges", "gene_weight", "pert_edges", "pert_weight", "order")


class DualStreamNet(nn.Module):
    """``forward(inp) -> (μ (B, G), log σ² (B, G), KL ())``; μ is the predicted change."""

    def __init__(self, config: DualStreamConfig, graphs: NetGraphs):
        super().__init__()
        self.n_genes, self.n_vocab = graphs.n_genes, graphs.n_vocab
        for name in _GRAPH_TENSORS:
            self.register_buffer(name, getattr(graphs, name))
        self.data = DataStream(config, graphs.n_genes) if config.data_stream else None
        self.knowledge = KnowledgeStream(config, graphs)
        self.fusion = None if self.data is None else _FUSIONS[config.fusion](config)
        g, e = graphs.n_genes, config.d_embed
        self.head_shared = nn.Linear(e, 2)  # readout shared by all genes (μ, log σ²)
        self.head_weight = nn.Parameter(config.head_init * torch.randn(2, g, e) / math.sqrt(e))  # per-gene readouts
        self.head_bias = nn.Parameter(torch.zeros(2, g))

    def _graphs(self) -> NetGraphs:
        return NetGraphs(self.n_genes, self.n_vocab, *(getattr(self, n) for n in _GRAPH_TENSORS))

    def forward(self, inp: NetInput) -> tuple[Tensor, Tensor, Tensor]:
        graphs = self._graphs()
        know = self.knowledge(inp, graphs)  # (B, G, e)
        if self.data is None:
            fused, kl = know, know.new_zeros(())  # (B, G, e), (): no data stream, no KL term
        else:
            data_genes, data_tokens, kl = self.data(inp, graphs)  # (B, G, e), (B, K, e), ()
            fused = self.fusion(know, data_genes, data_tokens)  # (B, G, e)
        own = torch.einsum("bge,sge->bsg", fused, self.head_weight) + self.head_bias  # (B, 2, G)
        out = own + self.head_shared(fused).transpose(1, 2)  # (B, 2, G)
        logvar = _LOGVAR_BOUND * torch.tanh(out[:, 1] / _LOGVAR_BOUND)  # (B, G), soft-bounded
        return inp.prior + out[:, 0], logvar, kl
