"""Selective-scan backends and the bidirectional Mamba encoder built on them.

The selective state-space model of Mamba (Gu & Dao 2023), per channel ``d`` and state ``n``::

    Ā_t = exp(Δ_t A)                      (zero-order-hold discretisation of A)
    B̄_t = Δ_t B_t                         (Euler discretisation of B, as in Mamba)
    h_t = Ā_t ⊙ h_{t−1} + B̄_t x_t,  h_0 = 0
    y_t = C_t · h_t + D x_t

Shapes used throughout: ``x, Δ: (batch, L, ED)``, ``A: (ED, N)``, ``B, C: (batch, L, N)``,
``D: (ED,)``; the result ``y`` is ``(batch, L, ED)``.

Three backends compute the same ``y`` behind :func:`selective_scan`:

- ``"mamba_ssm"``: the fused CUDA kernel ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``
  (only with CUDA tensors and ``mamba_ssm`` importable);
- ``"pscan"``: mambapy's Blelloch parallel scan (``mambapy.pscan.pscan``), any device. It pads the
  length to the next power of two internally (zeros at the end, which leave ``y_1..y_L`` unchanged),
  so its cost is that of ``2^⌈log2 L⌉`` steps: callers choose power-of-two lengths (the dual-stream
  model groups genes into a power-of-two number of tokens);
- ``"reference"``: a plain sequential loop over ``t`` — slow, for tests.

``"auto"`` picks ``mamba_ssm`` for CUDA tensors when importable, otherwise ``pscan``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from mambapy.mamba import MambaBlock, MambaConfig, RMSNorm
from mambapy.pscan import pscan
from torch import Tensor, nn

ScanBackend = Literal["auto", "mamba_ssm", "pscan", "reference"]
_BACKENDS = ("auto", "mamba_ssm", "pscan", "reference")


def mamba_ssm_available() -> bool:
    """Whether the CUDA kernels can be used: ``mamba_ssm`` importable and CUDA present."""
    return torch.cuda.is_available() and importlib.util.find_spec("mamba_ssm") is not None


def resolve_backend(backend: ScanBackend, device: torch.device | str) -> str:
    """The concrete backend for ``backend`` on ``device`` (``"auto"`` resolved; errors if impossible)."""
    if backend not in _BACKENDS:
        raise ValueError(f"scan backend {backend!r} is not one of {_BACKENDS}")
    on_cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        return "mamba_ssm" if on_cuda and mamba_ssm_available() else "pscan"
    if backend == "mamba_ssm" and not (on_cuda and mamba_ssm_available()):
        raise RuntimeError(
            f"scan backend 'mamba_ssm' needs CUDA tensors and the mamba-ssm package (device {device!s}); "
            "install it with: pip install mamba-ssm, or use backend 'pscan'"
        )
    return backend


def selective_scan_reference(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """Sequential selective scan: the module-docstring equations, one step of ``t`` at a time."""
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])  # (batch, ED, N)
    ys = []
    for t in range(x.shape[1]):
        a_bar = torch.exp(delta[:, t, :, None] * A)  # (batch, ED, N)
        b_bar = delta[:, t, :, None] * B[:, t, None, :]  # (batch, ED, N)
        h = a_bar * h + b_bar * x[:, t, :, None]  # (batch, ED, N)
        ys.append((h * C[:, t, None, :]).sum(-1))  # (batch, ED)
    return torch.stack(ys, dim=1) + D * x  # (batch, L, ED)


def selective_scan_pscan(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """Parallel selective scan with mambapy's Blelloch ``pscan`` (pads L to a power of two)."""
    a_bar = torch.exp(delta.unsqueeze(-1) * A)  # (batch, L, ED, N)
    bx = delta.unsqueeze(-1) * B.unsqueeze(2) * x.unsqueeze(-1)  # (batch, L, ED, N)
    hs = pscan(a_bar, bx)  # (batch, L, ED, N)
    return (hs @ C.unsqueeze(-1)).squeeze(-1) + D * x  # (batch, L, ED)


def selective_scan_cuda(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """Fused CUDA selective scan from ``mamba_ssm`` (channels-first layout inside)."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    y = selective_scan_fn(
        x.transpose(1, 2).contiguous(),  # (batch, ED, L)
        delta.transpose(1, 2).contiguous(),  # (batch, ED, L)
        A.contiguous(),  # (ED, N)
        B.transpose(1, 2).contiguous(),  # (batch, N, L)
        C.transpose(1, 2).contiguous(),  # (batch, N, L)
        D.contiguous(),  # (ED,)
        delta_softplus=False,
    )
    return y.transpose(1, 2)  # (batch, L, ED)


_SCANS = {"reference": selective_scan_reference, "pscan": selective_scan_pscan, "mamba_ssm": selective_scan_cuda}


def selective_scan(
    x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, *, backend: ScanBackend = "auto"
) -> Tensor:
    """``y`` of the selective SSM (module docstring) computed by ``backend``."""
    return _SCANS[resolve_backend(backend, x.device)](x, delta, A, B, C, D)


@dataclass
class MambaStreamConfig:
    """The Mamba encoder of the knowledge stream (symbols of Gu & Dao 2023)."""

    d_model: int = 16  # D: token width
    n_layers: int = 1  # number of residual Mamba blocks per direction
    d_state: int = 16  # N: SSM state size per channel
    d_conv: int = 4  # width of the causal depthwise convolution before the scan
    expand: int = 2  # E: inner width ED = E·D
    bidirectional: bool = True  # add a second stack run over the reversed sequence
    backend: ScanBackend = "auto"  # selective-scan backend (see selective_scan)

    def mambapy(self) -> MambaConfig:
        """The equivalent ``mambapy.mamba.MambaConfig`` (its own scan switches off: we route it)."""
        return MambaConfig(
            d_model=self.d_model,
            n_layers=self.n_layers,
            d_state=self.d_state,
            expand_factor=self.expand,
            d_conv=self.d_conv,
            pscan=True,
            use_cuda=False,
        )


class RoutedMambaBlock(MambaBlock):
    """mambapy's ``MambaBlock`` (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj) whose
    selective scan goes through :func:`selective_scan` with a chosen backend, in the input dtype."""

    def __init__(self, config: MambaStreamConfig):
        super().__init__(config.mambapy())
        self.backend = config.backend

    def ssm(self, x: Tensor, z: Tensor) -> Tensor:
        # x, z: (batch, L, ED); z-gating is applied by MambaBlock.forward
        A = -torch.exp(self.A_log.to(x.dtype))  # (ED, N)
        dbc = self.x_proj(x)  # (batch, L, dt_rank + 2N)
        dt, B, C = torch.split(dbc, [self.config.dt_rank, self.config.d_state, self.config.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # (batch, L, ED)
        return selective_scan(x, delta, A, B, C, self.D.to(x.dtype), backend=self.backend)  # (batch, L, ED)


class _ResidualStack(nn.Module):
    """``n_layers`` pre-norm residual blocks: ``x ← x + Mamba(RMSNorm(x))``."""

    def __init__(self, config: MambaStreamConfig):
        super().__init__()
        self.norms = nn.ModuleList(RMSNorm(config.d_model) for _ in range(config.n_layers))
        self.blocks = nn.ModuleList(RoutedMambaBlock(config) for _ in range(config.n_layers))

    def forward(self, x: Tensor) -> Tensor:
        for norm, block in zip(self.norms, self.blocks, strict=True):
            x = x + block(norm(x))  # (batch, L, D)
        return x


class BiMambaEncoder(nn.Module):
    """Mamba over a token sequence, forward and (optionally) reversed, summed, then RMS-normalised."""

    def __init__(self, config: MambaStreamConfig):
        super().__init__()
        self.forward_stack = _ResidualStack(config)
        self.backward_stack = _ResidualStack(config) if config.bidirectional else None
        self.norm = RMSNorm(config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        # x: (batch, L, D)
        y = self.forward_stack(x)  # (batch, L, D)
        if self.backward_stack is not None:
            y = y + self.backward_stack(x.flip(1)).flip(1)  # (batch, L, D)
        return self.norm(y)  # (batch, L, D)
