"""The compiled kernels of the surfaces' residual MLP (lpa_core.kernels): a run computes the same numbers bit for bit
in any group as alone (float32 and float64), every paradigm trains through them, and a machine that cannot build
them falls back to the PyTorch fast path. Their agreement with autograd is in tests/test_core.py (test_fast_*)."""
import subprocess
import sys

import pytest
import torch

from lpa_core import kernels
from lpa_core.models import ResMLP
from lpa_core.optim import RunAdam
from lpa_core.paradigms import PARADIGMS
from lpa_core.train import Context
from tests.test_core import make_cfg

pytestmark = pytest.mark.skipif(kernels.library() is None, reason="no C compiler: the kernels cannot be built here")
SEEDS = (0, 1, 2)


def model_and_opt(seeds, dtype):
    m = ResMLP(seeds=seeds, width=6, depth=4).to(dtype)
    return m, RunAdam([p for mod in (m.head, m.stem, *m.blocks) for p in mod.parameters()], lr=1e-2, weight_decay=0.1,
                      groups=[list(b.parameters()) for b in m.blocks])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_run_steps_alike_in_a_group_and_alone(dtype):
    """Forward, backward (with per-example layer dropout and two exits) and a masked Adam step on 3 runs at once,
    and on each run alone with the same data: the same predictions, gradients and parameters, bit for bit."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 2, 37, generator=gen, dtype=dtype), torch.randn(3, 1, 37, generator=gen, dtype=dtype)
    keep = [None, torch.rand(3, 37, generator=gen) > 0.3, torch.tensor([[True], [False], [True]]), None]
    blocks = torch.tensor([[True, True, True, False]] * 3)
    blocks[1, 2] = False

    def step(m, opt, rows):
        with m.dropping([k if k is None else k[rows] for k in keep]):
            preds, tape = m.tape(x[rows], exits=[2, 4])
        m.backward(tape, preds - y[rows], {id(p) for p in m.params()})
        opt.step(m.params(), blocks=blocks[rows])
        return preds, [p.grad.clone() for p in m.kernel_params], opt.flat.clone()

    group = step(*model_and_opt(SEEDS, dtype), slice(None))
    for r, s in enumerate(SEEDS):
        alone = step(*model_and_opt((s,), dtype), slice(r, r + 1))
        assert torch.equal(group[0][:, r:r + 1], alone[0])
        assert all(torch.equal(g[r:r + 1], a) for g, a in zip(group[1], alone[1]))
        assert torch.equal(group[2][r:r + 1], alone[2])


def test_the_vector_width_changes_no_number(tmp_path, monkeypatch):
    """kernels.c works in 16-lane blocks, in vectors of the machine's width: built for 16-byte vectors, it gives the
    native build's predictions, gradients and Adam step bit for bit (float32 and float64)."""
    narrow = tmp_path / "k16.so"
    kernels.build(narrow, extra=("-DLPA_NB=16",))
    native = kernels.load()
    out = {}
    for name, lib in (("native", native), ("16 bytes", kernels.open_library(narrow))):
        monkeypatch.setattr(kernels, "load", lambda lib=lib: lib)
        kernels._POINTERS.clear()
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(0)
            m, opt = model_and_opt(SEEDS, dtype)
            x, y = torch.randn(3, 2, 37, dtype=dtype), torch.randn(3, 1, 37, dtype=dtype)
            preds, tape = m.tape(x, exits=[1, 4])
            m.backward(tape, preds - y, {id(p) for p in m.params()})
            opt.step(m.params())
            out[name, dtype] = [preds, *(p.grad.clone() for p in m.kernel_params), opt.flat.clone()]
    for dtype in (torch.float32, torch.float64):
        assert all(torch.equal(a, b) for a, b in zip(out["native", dtype], out["16 bytes", dtype]))


@pytest.mark.parametrize("paradigm", sorted(PARADIGMS))
def test_every_paradigm_trains_a_run_alike_in_a_group_and_alone(paradigm):
    """Two epochs of a group of 2 surfaces x 2 seeds against each run alone: weights and Adam state equal bit for bit
    (layer dropout draws per seed, adaptive LPA's runs stop apart, float32)."""
    kw = dict(paradigm=paradigm, epochs=2, adaptive_warmup=1, depth=4, layerdrop_rate=0.4, layerskip_pmax=0.3, weight_decay=0.1)
    group = Context(make_cfg(datasets=("saddle", "high_freq"), seeds=(0, 1), **kw))
    assert group.fast
    for epoch in range(2):
        PARADIGMS[paradigm](group, epoch)
    for r, (d, s) in enumerate(group.cfg.runs):
        alone = Context(make_cfg(datasets=(d,), seeds=(s,), **kw))
        for epoch in range(2):
            PARADIGMS[paradigm](alone, epoch)
        for k in ("flat", "m", "v", "b1t", "b2t"):
            assert torch.equal(getattr(group.opt, k)[r:r + 1], getattr(alone.opt, k)), (d, s, k)
        assert group.flops[r] == alone.flops[0] and group.steps[r] == alone.steps[0]


def test_denormals_are_flushed_inside_the_step_only():
    """Adam runs with denormals flushed (beta1^t would otherwise stick at the least denormal and slow every step);
    the thread's own floating-point mode is back afterwards."""
    m, opt = model_and_opt(SEEDS, torch.float32)
    opt.b1t.fill_(1e-45)  # the least float32 denormal: 0.9 x it rounds back to it
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    opt.step(m.params())
    assert (opt.b1t[:, :10] == 0).all()
    assert float(torch.tensor([1e-40]) * 1.0) != 0.0


def test_a_machine_that_cannot_build_them_trains_on_the_pytorch_path(tmp_path):
    """No working compiler and an empty cache: one line on stderr, and the job trains on the PyTorch fast path."""
    code = ("import torch; from lpa_core import kernels; from lpa_core.train import Context; from lpa_core.paradigms import PARADIGMS; "
            "from tests.test_core import make_cfg; assert kernels.library() is None; "
            "ctx = Context(make_cfg()); PARADIGMS['lpa'](ctx, 0); x, y = next(ctx.batches()); "
            "print(type(ctx.model.tape(x)[1]).__module__, int(ctx.steps[0]))")
    env = {"PATH": "/usr/bin:/bin", "CC": "false", "LPA_KERNEL_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=kernels.SOURCE.parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["lpa_core.models", "24"]
    assert out.stderr.count("lpa_core.kernels: cannot build") == 1
    assert not list((tmp_path / "cache").glob("*.so"))


def test_pointers_tell_apart_tensors_at_one_address_with_another_run_stride():
    """A one-run model's run axis has any stride (a view of [1, P] keeps out x in), and freed memory comes back at the
    same address: the cached pointers must key on the strides too, or a later group reads the wrong rows."""
    buf = torch.zeros(3, 50)
    one = buf[:1, 10:30].view(1, 4, 5)
    group = buf[:, 10:30].view(3, 4, 5)
    assert one.data_ptr() == group.data_ptr() and one.stride(0) != group.stride(0)
    assert kernels.pointers([one])[1].tolist() == [one.stride(0)]
    assert kernels.pointers([group])[1].tolist() == [50]


def test_a_tape_whose_buffers_a_later_forward_took_is_refused_and_evaluation_needs_none():
    """Training forwards share the model's workspace: backward on a tape after a later forward refuses (never a
    silent wrong gradient). Evaluation takes no tape and predicts the same numbers."""
    m, _ = model_and_opt(SEEDS, torch.float32)
    x = torch.randn(3, 2, 50, generator=torch.Generator().manual_seed(0))
    pred, first = m.tape(x, 2)
    m.tape(x, 4)
    with pytest.raises(RuntimeError, match="later forward has reused"):
        m.backward(first, pred, {id(p) for p in m.params(2)})
    full, tape = m.tape(x)
    assert torch.equal(m.predict(x, [2, 4]), torch.stack([pred, full]))
    m.backward(tape, full, {id(p) for p in m.params()})  # the latest tape is fine


def trained(paradigm, fuse, dtype, **kw):
    from tests.test_core import in_float64
    ctx = Context(make_cfg(paradigm=paradigm, datasets=("saddle", "high_freq"), seeds=(0, 1), epochs=3, adaptive_warmup=1,
                           depth=4, weight_decay=0.1, **kw))
    ctx = in_float64(ctx) if dtype == torch.float64 else ctx
    ctx.fuse = fuse
    for epoch in range(3):
        PARADIGMS[paradigm](ctx, epoch)
    return ctx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("paradigm", ["simultaneous", "sequential", "lpa", "lpa_grouped", "adaptive_lpa"])
def test_a_whole_step_in_one_call_equals_the_calls_apart(paradigm, dtype):
    """A plain loss's step in one kernels.train call (forward, loss, backward, Adam, one run after another) against
    forward, backward and adam called apart for every run: weights, Adam state and counters equal bit for bit."""
    one, apart = trained(paradigm, True, dtype), trained(paradigm, False, dtype)
    for k in ("flat", "m", "v", "b1t", "b2t"):
        assert getattr(one.opt, k).dtype == dtype and torch.equal(getattr(one.opt, k), getattr(apart.opt, k)), k
    for k in ("steps", "samples", "flops"):
        assert torch.equal(getattr(one, k), getattr(apart, k)), k


def test_a_run_whose_loss_is_not_finite_is_marked_and_untouched_in_a_whole_step():
    """Run 1's head is NaN: the one-call step marks it diverged and leaves its weights and Adam state as they were,
    while runs 0 and 2 step; a deferred loss from before the last step is refused, and so is arithmetic on one."""
    ctx = Context(make_cfg(seeds=(0, 1, 2)))
    with torch.no_grad():
        ctx.model.head.weight[1] = float("nan")
    before = {k: getattr(ctx.opt, k).clone() for k in ("flat", "m", "v", "b1t")}
    x, y = next(ctx.batches())
    loss = ctx.loss(x, y)
    assert type(loss).__name__ == "Deferred"
    ctx.step(loss, ctx.model.params())
    assert ctx.bad.tolist() == [False, True, False] and ctx.steps.tolist() == [1, 0, 1]
    for k, b in before.items():
        now = getattr(ctx.opt, k)
        assert torch.equal(now[1], b[1], ) if k != "flat" else torch.equal(now[1].nan_to_num(), b[1].nan_to_num()), k
        assert not torch.equal(now[0], b[0]) and not torch.equal(now[2], b[2]), k
    assert torch.isfinite(loss.last[[0, 2]]).all()
    stale = ctx.loss(x, y)
    ctx.step(ctx.loss(x, y), ctx.model.params())
    with pytest.raises(RuntimeError, match="before the last optimizer step"):
        ctx.step(stale, ctx.model.params())
    with pytest.raises(TypeError):
        2 * ctx.loss(x, y)
