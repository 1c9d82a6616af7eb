"""Every attention backend against the naive reference (values and gradients for q, k, v and the
bias), and the dispatcher's selection / fallback rules."""
import importlib
import warnings

import pytest
import torch

from agile_ir_plugin.profiling import saved_activation_bytes

A = importlib.import_module('agile_ir_plugin.ops.attention')
CHUNKED = importlib.import_module('agile_ir_plugin.ops.chunked')

TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


class Case:
    """q, k, v (B, H, N, D) and a bias of the requested kind:
    'rpb'    learnable (1, H, N, N) relative-position-like table (broadcast over B),
    'mask'   fixed (B, 1, N, N) with -100 on "padded" keys (Swin shift / padding style),
    'both'   the two summed (gradient flows to the table),
    None     no bias."""

    def __init__(self, b=3, h=2, n=49, d=8, dv=None, bias='rpb', dtype=torch.float32, seed=0):
        g = torch.Generator().manual_seed(seed)
        dv = d if dv is None else dv
        self.q, self.k = (torch.randn(b, h, n, d, generator=g).to(dtype).requires_grad_() for _ in range(2))
        self.v = torch.randn(b, h, n, dv, generator=g).to(dtype).requires_grad_()
        self.rpb = self.mask = None
        if bias in ('rpb', 'both'):
            self.rpb = (torch.randn(1, h, n, n, generator=g) * 0.5).to(dtype).requires_grad_()
        if bias in ('mask', 'both'):
            mask = torch.zeros(b, 1, n, n)
            mask[:, :, :, n - 1 - n // 5:] = -100.0  # the last keys are padding for every query
            mask[-1, :, : n // 2, n // 3: n // 2] = -100.0
            self.mask = mask.to(dtype)

    def leaves(self):
        return [self.q, self.k, self.v] + ([self.rpb] if self.rpb is not None else [])

    @staticmethod
    def bias(rpb, mask):
        if rpb is None:
            return mask
        return rpb if mask is None else rpb + mask

    def run(self, backend, grad=True, leaves=None):
        leaves = self.leaves() if leaves is None else leaves
        q, k, v = leaves[:3]
        rpb = leaves[3] if len(leaves) > 3 else None
        mask = None if self.mask is None else self.mask.to(q.device, q.dtype)
        out = A.attention(q, k, v, self.bias(rpb, mask), backend=backend)
        if not grad:
            return out, []
        weight = torch.linspace(-1, 1, out.numel(), dtype=torch.float64, device=out.device).view(out.shape)
        return out, list(torch.autograd.grad((out.double() * weight).sum(), leaves))

    def reference(self):
        """Naive attention in float64 on the same (possibly bf16-rounded) values."""
        leaves64 = [t.detach().cpu().double().requires_grad_() for t in self.leaves()]
        mask = self.mask
        self.mask = None if mask is None else mask.double()
        try:
            return self.run('naive', leaves=leaves64)
        finally:
            self.mask = mask


BACKENDS_WITH_GRAD = [name for name in A.available_backends() if name != 'flex']  # flex: no CPU backward


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('case', [dict(bias='rpb'), dict(bias='mask'), dict(bias='both'), dict(bias=None),
                                  dict(bias='rpb', dv=12), dict(bias='mask', n=25, d=4, dv=6),
                                  dict(bias='rpb', b=1, h=3, n=64, d=16)])
@pytest.mark.parametrize('backend', BACKENDS_WITH_GRAD)
def test_backend_matches_naive_values_and_grads(backend, case, dtype):
    c = Case(dtype=dtype, **case)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        out, grads = c.run(backend)
    ref_out, ref_grads = c.reference()
    assert out.dtype == dtype and out.shape == ref_out.shape
    assert rel_err(out, ref_out) <= TOL[dtype]
    assert len(grads) == len(ref_grads)
    for g, rg in zip(grads, ref_grads):
        assert rel_err(g, rg) <= TOL[dtype]


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('case', [dict(bias='both'), dict(bias=None), dict(bias='rpb', dv=12)])
def test_flex_forward_matches_naive(case, dtype):
    if 'flex' not in A.available_backends():
        pytest.skip('FlexAttention needs PyTorch >= 2.5')
    c = Case(dtype=dtype, **case)
    with torch.no_grad():
        assert A.resolve_backend('flex', c.q, c.bias(c.rpb, c.mask), c.v) == 'flex'
        out, _ = c.run('flex', grad=False)
    ref_out, _ = c.reference()
    assert rel_err(out, ref_out) <= TOL[dtype]


def test_chunked_splits_rows_and_batches(monkeypatch):
    """Tiny chunks: several query-row blocks per batch element and several batch blocks, with a
    per-batch bias, a broadcast one and a row-broadcast one."""
    monkeypatch.setattr(CHUNKED, 'CHUNK_ELEMENTS', 2 * 49 * 10)  # 10 query rows of 2 heads at once
    for bias_shape in [(3, 2, 49, 49), (1, 1, 49, 49), (1, 2, 1, 49), (49, 49)]:
        c = Case(bias=None)
        c.rpb = torch.randn(*bias_shape, generator=torch.Generator().manual_seed(1)).requires_grad_()
        out, grads = c.run('chunked')
        ref_out, ref_grads = c.reference()
        assert rel_err(out, ref_out) <= 1e-5
        for g, rg in zip(grads, ref_grads):
            assert g.shape == rg.shape and rel_err(g, rg) <= 1e-5


def test_chunked_keeps_no_score_matrix_for_backward():
    b, h, n, d = 4, 2, 256, 16
    c = Case(b=b, h=h, n=n, d=d, bias='rpb')
    q, k, v, bias = c.leaves()
    naive, _ = saved_activation_bytes(lambda: A.attention(q, k, v, bias, backend='naive'))
    chunked, _ = saved_activation_bytes(lambda: A.attention(q, k, v, bias, backend='chunked'))
    scores = b * h * n * n * 4
    assert naive >= scores  # the probabilities are kept
    # q, k, v, out, lse and the (1, H, N, N) bias only
    assert chunked <= 4 * b * h * n * d * 4 + b * h * n * 4 + h * n * n * 4 + 4096


def test_auto_selection_on_cpu():
    q, k, v, bias = Case(bias='rpb').leaves()
    # a learnable bias under autograd: PyTorch's CPU flash kernel refuses it -> chunked
    assert A.resolve_backend('auto', q, bias, v) == 'chunked'
    with torch.no_grad():
        assert A.resolve_backend('auto', q, bias, v) == 'sdpa'
    assert A.resolve_backend('auto', q, bias.detach(), v) == 'sdpa'
    assert A.resolve_backend('auto', q, None, v) == 'sdpa'
    v12 = torch.randn(*v.shape[:-1], 12)
    with torch.no_grad():
        assert A.resolve_backend('auto', q, None, v12) == 'chunked'  # CPU flash needs Dqk == Dv


def test_flash_attn_with_bias_goes_where_auto_goes(monkeypatch):
    """flash_attn takes no additive bias: a biased call runs what ``auto`` picks (exact), with a
    one-time warning, and never reaches the flash_attn kernel."""
    def must_not_run(*args, **kwargs):
        raise AssertionError('flash_attn kernel called with a bias')

    monkeypatch.setattr(A, '_flash_attn_func', must_not_run)
    monkeypatch.setattr(A, '_WARNED', set())
    c = Case(bias='rpb')
    with pytest.warns(UserWarning, match='no additive bias'):
        name = A.resolve_backend('flash_attn', c.q, c.rpb, c.v)
    assert name == A.resolve_backend('auto', c.q, c.rpb, c.v)
    out, grads = c.run('flash_attn')
    ref_out, ref_grads = c.reference()
    assert rel_err(out, ref_out) <= 1e-5 and all(rel_err(g, r) <= 1e-5 for g, r in zip(grads, ref_grads))


def test_unavailable_backends_fall_back(monkeypatch):
    monkeypatch.setattr(A, '_WARNED', set())
    q, k, v, bias = Case(bias='rpb').leaves()
    monkeypatch.setattr(A, '_flash_attn_func', None)
    with pytest.warns(UserWarning, match='not installed'):
        assert A.resolve_backend('flash_attn', q, None, v) == 'sdpa'
    with pytest.warns(UserWarning, match='no backward on CPU'):
        assert A.resolve_backend('flex', q, bias, v) == 'chunked'
    with pytest.raises(ValueError, match='Unknown attention backend'):
        A.attention(q, k, v, bias, backend='flash3')


def test_bad_inputs_raise_one_clear_error():
    q = torch.randn(2, 2, 9, 4)
    with pytest.raises(ValueError, match='4-D'):
        A.attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match='shape mismatch'):
        A.attention(q, torch.randn(2, 2, 9, 5), q)
    with pytest.raises(ValueError, match='does not broadcast'):
        A.attention(q, q, q, torch.zeros(3, 1, 9, 9))
    with pytest.raises(ValueError, match='additive float bias'):
        A.attention(q, q, q, torch.ones(9, 9, dtype=torch.bool))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize('bias_kind', [None, 'rpb'])
def test_cuda_backends_match_naive(dtype, bias_kind):
    c = Case(b=2, h=2, n=256, d=16, bias=bias_kind, dtype=dtype)
    ref_out, ref_grads = c.reference()
    cuda = [t.detach().cuda().requires_grad_() for t in c.leaves()]
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for backend in A.available_backends():
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            out, grads = c.run(backend, leaves=cuda)
        assert rel_err(out.cpu(), ref_out) <= tol, backend
        for g, r in zip(grads, ref_grads):
            assert rel_err(g.cpu(), r) <= tol, backend
    if bias_kind is not None:
        assert A.resolve_backend('auto', cuda[0], cuda[3], cuda[2]) == 'sdpa'


@pytest.mark.parametrize('chunk', [None, 2 ** 12])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_chunked_takes_a_hankel_bias_as_is(monkeypatch, chunk, dtype):
    """A ``HankelBias`` (ESC's relative-position bias with reversed keys) through ``chunked``: the
    values and gradients (q, k, v and the table) of naive attention with the dense bias, whether a
    chunk holds several windows or a few query rows of one (``chunk``); nothing (heads, N, N) kept."""
    from agile_ir_plugin.ops.window import HankelBias
    if chunk:
        monkeypatch.setattr(CHUNKED, 'CHUNK_ELEMENTS', chunk)  # 2 heads x 64 x 64 > 2**12: rows of 32
    ws, heads = 8, 2
    case = Case(b=3, h=heads, n=ws * ws, d=4, bias=None, dtype=dtype)
    table = (torch.randn(heads, 2 * ws - 1, 2 * ws - 1, generator=torch.Generator().manual_seed(5)) * 0.5).to(dtype)
    table.requires_grad_()
    grad = torch.randn(3, heads, ws * ws, 4, generator=torch.Generator().manual_seed(6)).to(dtype)
    inputs = (case.q, case.k, case.v, table)
    out = A.attention(case.q, case.k, case.v, HankelBias(table, ws), backend='auto')
    got = torch.autograd.grad(out, inputs, grad)
    ref_out = A.naive_attention(case.q, case.k, case.v, HankelBias(table, ws).materialize())
    ref = torch.autograd.grad(ref_out, inputs, grad)
    tol = 1e-12 if dtype == torch.float64 else TOL[dtype]
    assert rel_err(out, ref_out) < tol
    for g, r in zip(got, ref):
        assert rel_err(g, r) < tol
    saved, _ = saved_activation_bytes(lambda: A.attention(case.q, case.k, case.v, HankelBias(table, ws)).sum())
    assert saved < heads * (ws * ws) ** 2 * dtype.itemsize  # q, k, v, out, lse, table: less than one bias


@pytest.mark.parametrize('chunk', [None, 2 ** 12])
def test_hankel_bias_without_grad_runs_the_cpu_flash_kernel_by_rows(monkeypatch, chunk):
    """Inference with a ``HankelBias`` on CPU: the fused flash kernel over blocks of query rows
    (the bias rows copied from the table, no dense bias), equal to naive attention with the dense
    bias; one row block or several (``chunk``)."""
    from agile_ir_plugin.ops.window import HankelBias
    if chunk:
        monkeypatch.setattr(CHUNKED, 'CHUNK_ELEMENTS', chunk)
    calls = []
    real = CHUNKED.hankel_flash_forward
    monkeypatch.setattr(A, 'hankel_flash_forward', lambda *a: calls.append(1) or real(*a))
    ws, heads = 8, 2
    case = Case(b=3, h=heads, n=ws * ws, d=4, bias=None)
    table = torch.randn(heads, 2 * ws - 1, 2 * ws - 1, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = A.attention(case.q, case.k, case.v, HankelBias(table, ws), backend='auto')
        ref = A.naive_attention(case.q, case.k, case.v, HankelBias(table, ws).materialize())
    assert calls == [1]
    assert rel_err(out, ref) < TOL[torch.float32]


def test_hankel_bias_when_the_row_blocked_cpu_kernel_refuses(monkeypatch):
    """If the row-blocked CPU flash forward refuses, the chunked backend still attends with the
    bias (copied out whole), never without it."""
    from agile_ir_plugin.ops.window import HankelBias
    monkeypatch.setattr(CHUNKED, 'hankel_flash_forward', lambda *a: (None, None))
    ws, heads = 8, 2
    case = Case(b=2, h=heads, n=ws * ws, d=4, bias=None, dtype=torch.float64)
    table = torch.randn(heads, 2 * ws - 1, 2 * ws - 1, dtype=torch.float64, requires_grad=True)
    out = CHUNKED.chunked_attention(case.q, case.k, case.v, HankelBias(table, ws))
    ref = A.naive_attention(case.q, case.k, case.v, HankelBias(table, ws).materialize())
    assert rel_err(out, ref) < 1e-12
