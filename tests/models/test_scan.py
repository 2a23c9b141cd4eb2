"""Selective-scan backends agree (values and gradients); the Mamba encoder is causal per direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perturbench.models.scan import (
    BiMambaEncoder,
    MambaStreamConfig,
    RoutedMambaBlock,
    mamba_ssm_available,
    resolve_backend,
    selective_scan,
    selective_scan_pscan,
    selective_scan_reference,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _inputs(rng: np.random.Generator, *, batch=2, length=13, ed=5, n=4, dtype=torch.float64, device="cpu"):
    def t(*shape, positive=False):
        a = rng.normal(size=shape)
        a = np.log1p(np.exp(a)) if positive else a
        return torch.tensor(a, dtype=dtype, device=device, requires_grad=True)

    x, delta = t(batch, length, ed), t(batch, length, ed, positive=True)
    A = (-t(ed, n, positive=True)).detach().requires_grad_(True)
    return x, delta, A, t(batch, length, n), t(batch, length, n), t(ed)


def _values_and_grads(scan, inputs, weight):
    y = scan(*inputs)
    grads = torch.autograd.grad((y * weight).sum(), inputs)
    return y.detach(), grads


@pytest.mark.parametrize("length", [1, 2, 8, 13, 32])
def test_pscan_matches_reference_values_and_gradients(rng, length):
    inputs = _inputs(rng, length=length)
    weight = torch.tensor(rng.normal(size=(2, length, 5)))
    y_ref, g_ref = _values_and_grads(selective_scan_reference, inputs, weight)
    y_par, g_par = _values_and_grads(selective_scan_pscan, inputs, weight)
    torch.testing.assert_close(y_par, y_ref, rtol=1e-10, atol=1e-10)
    for name, a, b in zip(("x", "delta", "A", "B", "C", "D"), g_par, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


def test_reference_matches_hand_computed_one_channel():
    # ED = N = 1, A = -1, Δ = 1, B = C = 1, D = 0: h_t = e^{-1} h_{t-1} + x_t.
    x = torch.tensor([[[1.0], [2.0], [0.0]]], dtype=torch.float64)
    one = torch.ones(1, 3, 1, dtype=torch.float64)
    A, D = -torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    y = selective_scan_reference(x, one, A, one, one, D)
    e = np.exp(-1.0)
    expected = [1.0, e + 2.0, e * (e + 2.0)]
    np.testing.assert_allclose(y.flatten().numpy(), expected, rtol=1e-12)


def test_unknown_backend_is_rejected(rng):
    with pytest.raises(ValueError, match="scan backend 'fast' is not one of"):
        selective_scan(*_inputs(rng), backend="fast")


@pytest.mark.skipif(mamba_ssm_available(), reason="checks the error raised when mamba_ssm cannot run")
def test_mamba_ssm_backend_without_cuda_is_an_error():
    with pytest.raises(RuntimeError, match="scan backend 'mamba_ssm' needs CUDA"):
        resolve_backend("mamba_ssm", "cpu")


def test_auto_backend_on_cpu_is_pscan():
    assert resolve_backend("auto", "cpu") == "pscan"


def test_routed_block_backends_agree_in_float64(rng):
    torch.manual_seed(0)
    cfg = MambaStreamConfig(d_model=6, d_state=4, backend="pscan")
    block = RoutedMambaBlock(cfg).double()
    x = torch.tensor(rng.normal(size=(3, 16, 6)), requires_grad=True)
    y_par = block(x)
    (g_par,) = torch.autograd.grad(y_par.sum(), x)
    block.backend = "reference"
    y_ref = block(x)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), x)
    torch.testing.assert_close(y_par, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_par, g_ref, rtol=1e-9, atol=1e-9)


def test_forward_direction_is_causal_and_bidirectional_sees_the_future(rng):
    torch.manual_seed(0)
    x = torch.tensor(rng.normal(size=(1, 8, 6)))
    later = x.clone()
    later[:, 5:] += 1.0  # change only tokens 5..7
    one_way = BiMambaEncoder(MambaStreamConfig(d_model=6, d_state=4, bidirectional=False)).double()
    torch.testing.assert_close(one_way(x)[:, :5], one_way(later)[:, :5])
    two_way = BiMambaEncoder(MambaStreamConfig(d_model=6, d_state=4)).double()
    assert not torch.allclose(two_way(x)[:, :5], two_way(later)[:, :5])


@pytest.mark.gpu
@pytest.mark.skipif(not mamba_ssm_available(), reason="needs CUDA and the mamba-ssm package")
def test_mamba_ssm_matches_mambapy_on_gpu(rng):
    inputs = _inputs(rng, batch=2, length=64, ed=8, n=16, dtype=torch.float32, device="cuda")
    weight = torch.tensor(rng.normal(size=(2, 64, 8)), dtype=torch.float32, device="cuda")
    y_cuda, g_cuda = _values_and_grads(lambda *a: selective_scan(*a, backend="mamba_ssm"), inputs, weight)
    y_par, g_par = _values_and_grads(lambda *a: selective_scan(*a, backend="pscan"), inputs, weight)
    torch.testing.assert_close(y_cuda, y_par, rtol=1e-3, atol=1e-3)
    for a, b in zip(g_cuda, g_par, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)
