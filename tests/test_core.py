"""The training core: which parameters each paradigm updates (bit for bit), how many steps it takes, Adaptive LPA's
stopping rule, the model's depth interface, the run-stacked optimizer, vectorised runs vs single runs, divergence
and resume after a kill. Everything runs on tiny CPU problems (200 points, a few epochs)."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from lpa_core import kernels
from lpa_core import train as train_mod
from lpa_core.config import TrainConfig
from lpa_core.models import ResMLP
from lpa_core.registry import create_model
from lpa_core.optim import RunAdam, cosine_lr
from lpa_core.paradigms import PARADIGMS, simultaneous
from lpa_core.paradigms.lpa import unit_depths
from lpa_core.paradigms.sequential import stage
from lpa_core.train import Context, default_ckpt_dir, train

ROOT = Path(__file__).resolve().parent.parent
L = 5            # blocks in the tiny models below
NB = 4           # batches per epoch: n_train 200 / batch_size 50
QUIET = lambda msg: None  # noqa: E731
torch.set_num_threads(1)  # as every job does (cfg.threads): tiny ops, and 2 threads on a shared 2-core box crawl


def make_cfg(**kw):
    base = dict(datasets=("saddle",), seeds=(0,), depth=L, width=6, n_train=200, n_test=200, batch_size=50,
                epochs=2, lr=1e-2, grid=8, eval_every=1, ckpt_every_s=1e9, adaptive_warmup=1)
    base.update(kw)
    return TrainConfig(**base)


# --- a recorder around ctx.step: what each step asked for, and what it actually changed ---------------------------

def modules(model):
    return {"stem": model.stem, **{f"b{j + 1}": b for j, b in enumerate(model.blocks)}, "head": model.head}


def P(i):
    """Names of what a prefix step at depth i may update: stem, blocks 1..i, head."""
    return frozenset({"stem", "head"} | {f"b{j}" for j in range(1, i + 1)})


def S(i):
    """Sequential's stage i: stem, block i, head."""
    return frozenset({"stem", f"b{i}", "head"})


def snapshot(ctx):
    """{module: [values, m, v, b1t, b2t]} each [R, n], cloned: the module's weights and all its optimizer state."""
    snap = {}
    for name, mod in modules(ctx.model).items():
        ps = list(mod.parameters())
        vals = torch.cat([p.detach().reshape(ctx.n_runs, -1) for p in ps], dim=1).clone()
        state = [torch.cat([getattr(ctx.opt, b)[:, slice(*ctx.opt.slices[p])] for p in ps], dim=1).clone()
                 for b in ("m", "v", "b1t", "b2t")]
        snap[name] = [vals, *state]
    return snap


def record_steps(ctx):
    """Wrap ctx.step; every call appends (requested module set, effective run mask, per-run changed sets) and
    checks on the spot: an active run changes exactly the requested modules (every element's step count advances,
    its weights move), everything else (other modules, other runs) keeps weights, m, v, b1t, b2t bit for bit."""
    calls, orig = [], ctx.step

    def step(losses, params, runs=None):
        ids = {id(p) for p in params}
        requested = frozenset(n for n, m in modules(ctx.model).items() if all(id(p) in ids for p in m.parameters()))
        assert all(any(id(p) in ids for p in m.parameters()) == (n in requested) for n, m in modules(ctx.model).items())
        before = snapshot(ctx)
        orig(losses, params, runs)
        after = snapshot(ctx)
        active = (torch.ones(ctx.n_runs, dtype=torch.bool) if runs is None else runs.clone().cpu()) & ~ctx.bad
        changed = []
        for r in range(ctx.n_runs):
            ch = frozenset(n for n in before if not all(torch.equal(a[r], b[r]) for a, b in zip(before[n], after[n])))
            want = requested if active[r] else frozenset()
            assert ch == want, f"run {r}: changed {sorted(ch)}, expected {sorted(want)}"
            for n in ch:  # an update, not a nudge: every element stepped once, weights moved
                assert (after[n][3][r] != before[n][3][r]).all() and not torch.equal(after[n][0][r], before[n][0][r])
            changed.append(ch)
        calls.append((requested, active.tolist(), changed))

    ctx.step = step
    return calls


def warm_context(decoupled=True, weight_decay=0.1, **kw):
    """A Context after one full simultaneous epoch: Adam moments and step counts non-zero everywhere."""
    ctx = Context(make_cfg(weight_decay=weight_decay, **kw))
    ctx.opt.decoupled = decoupled
    simultaneous(ctx, 0)
    assert (ctx.opt.m != 0).float().mean() > 0.5 and (ctx.opt.b1t < 1).all()
    return ctx


# --- 1. inactive blocks get no update at all ------------------------------------------------------------------------

@pytest.mark.parametrize("decoupled", [True, False])
@pytest.mark.parametrize("i", [1, 3])
def test_prefix_step_leaves_deeper_blocks_and_their_adam_state_bit_for_bit(decoupled, i):
    ctx = warm_context(decoupled)
    before = snapshot(ctx)
    x, y = next(ctx.batches())
    ctx.step(ctx.loss(x, y, depth=i), ctx.model.params(depth=i))
    after = snapshot(ctx)
    for j in range(i + 1, L + 1):
        for a, b in zip(before[f"b{j}"], after[f"b{j}"]):  # weights, m, v, b1t, b2t
            assert torch.equal(a, b), f"block {j} changed by a step at depth {i}"
    for name in P(i):
        assert not torch.equal(before[name][0], after[name][0]), f"{name} did not move"


@pytest.mark.parametrize("decoupled", [True, False])
@pytest.mark.parametrize("paradigm,e2e", [("lpa", "epoch"), ("lpa", "batch"), ("lpa_grouped", "epoch"),
                                          ("sequential", "epoch"), ("simultaneous", "epoch"),
                                          ("deep_supervision", "epoch")])
def test_paradigm_updates_exactly_its_active_blocks(paradigm, e2e, decoupled):
    ctx = warm_context(decoupled, paradigm=paradigm, lpa_e2e=e2e, epochs=L, group_size=2)
    calls = record_steps(ctx)  # checks every step: requested modules change, nothing else does
    epochs = L if paradigm == "sequential" else 1
    for epoch in range(epochs):
        PARADIGMS[paradigm](ctx, epoch)
    ALL = P(L)
    expected = {
        ("lpa", "epoch"): [P(i) for i in range(1, L + 1)] * NB + [ALL] * NB,
        ("lpa", "batch"): ([P(i) for i in range(1, L + 1)] + [ALL]) * NB,
        ("lpa_grouped", "epoch"): [P(2), P(4), P(5)] * NB + [ALL] * NB,
        ("sequential", "epoch"): [S(i) for i in range(1, L + 1) for _ in range(NB)],
        ("simultaneous", "epoch"): [ALL] * NB,
        ("deep_supervision", "epoch"): [ALL] * NB,
    }[paradigm, e2e]
    assert [c[0] for c in calls] == expected
    assert all(c[1] == [True] for c in calls)


TOPOLOGIES = [("ancre", "ingoing"), ("ancre", "outgoing"), ("ancre", "none"), ("gains", "ingoing"),
              ("all_fixed", "ingoing")]


@pytest.mark.parametrize("topology,normalisation", TOPOLOGIES)
def test_lpa_prefix_steps_leave_deeper_shortcut_coefficients(topology, normalisation):
    """A block owns the shortcut coefficients into it: a prefix step at depth i leaves the coefficients of blocks > i
    and their Adam state bit for bit (even under outgoing normalisation, where x_i depends on them)."""
    ctx = warm_context(paradigm="lpa", topology=topology, normalisation=normalisation)
    calls = record_steps(ctx)
    PARADIGMS["lpa"](ctx, 0)
    assert [c[0] for c in calls] == [P(i) for i in range(1, L + 1)] * NB + [P(L)] * NB
    if topology != "all_fixed":
        assert all(hasattr(b, "shortcut") and any(p is b.shortcut for p in b.parameters()) for b in ctx.model.blocks)


def test_run_mask_leaves_other_runs_untouched():
    ctx = warm_context(seeds=(0, 1, 2))
    calls = record_steps(ctx)
    x, y = next(ctx.batches())
    ctx.step(ctx.loss(x, y), ctx.model.params(), runs=torch.tensor([True, False, True]))
    ctx.step(ctx.loss(x, y, depth=2), ctx.model.params(depth=2), runs=torch.tensor([False, True, False]))
    assert [c[2] for c in calls] == [[P(L), frozenset(), P(L)], [frozenset(), P(2), frozenset()]]
    assert ctx.steps.tolist() == [NB + 1, NB + 1, NB + 1]


def fake_metric(ctx, peaks):
    """Replace the batch metric of ctx (real losses, so steps are real): run r's metric peaks at depth peaks[r]
    (None = improves at every depth)."""
    orig = ctx.loss

    def loss(x, y, depth=None, metric=False):
        mse = orig(x, y, depth)
        d = ctx.model.depth if depth is None else depth
        m = torch.tensor([float(d) if p is None else -abs(d - p) for p in peaks])
        return (mse, m) if metric else mse
    ctx.loss = loss


@pytest.mark.parametrize("decoupled", [True, False])
def test_adaptive_lpa_steps_prefixes_per_run_and_leaves_the_rest(decoupled):
    ctx = warm_context(decoupled, paradigm="adaptive_lpa", seeds=(0, 1, 2), adaptive_warmup=0)
    fake_metric(ctx, [2, 3, None])  # run 0 stops at depth 3, run 1 at 4, run 2 never
    calls = record_steps(ctx)
    PARADIGMS["adaptive_lpa"](ctx, 0)
    T, F = True, False
    progressive = [(P(1), [T, T, T]), (P(2), [T, T, T]), (P(3), [T, T, T]), (P(4), [F, T, T]), (P(5), [F, F, T])]
    final = [(P(3), [T, F, F]), (P(4), [F, T, F]), (P(5), [F, F, T])]
    assert [c[:2] for c in calls] == [(s, list(m)) for s, m in progressive] * NB + [(s, list(m)) for s, m in final] * NB
    assert ctx.state["depth"].tolist() == [3, 4, L]


# --- 2. steps per batch ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("paradigm,e2e,group,per_batch", [
    ("lpa", "epoch", 2, L + 1), ("lpa", "batch", 2, L + 1),
    ("lpa_grouped", "epoch", 2, math.ceil(L / 2) + 1), ("lpa_grouped", "batch", 3, math.ceil(L / 3) + 1),
    ("lpa_grouped", "epoch", 1, L + 1), ("simultaneous", "epoch", 2, 1), ("deep_supervision", "epoch", 2, 1),
    ("sequential", "epoch", 2, 1),
])
def test_optimizer_steps_per_batch(paradigm, e2e, group, per_batch):
    ctx = Context(make_cfg(paradigm=paradigm, lpa_e2e=e2e, group_size=group, seeds=(0, 1)))
    PARADIGMS[paradigm](ctx, 0)
    assert ctx.steps.tolist() == [NB * per_batch] * 2
    assert ctx.samples.tolist() == [NB * per_batch * 50] * 2


def test_unit_depths_and_sequential_stages():
    assert unit_depths(6, 2) == [2, 4, 6] and unit_depths(5, 2) == [2, 4, 5] and unit_depths(6, 4) == [4, 6]
    assert unit_depths(6, 1) == [1, 2, 3, 4, 5, 6] and unit_depths(3, 7) == [3]
    for steps in (6, 10, 13):
        stages = [stage(t, steps, 6) for t in range(steps)]
        assert stages == sorted(stages) and set(stages) == set(range(1, 7))  # every block, in order
        counts = [stages.count(i) for i in range(1, 7)]
        assert max(counts) - min(counts) <= 1
    assert [stage(t, 12, 6) for t in range(12)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]  # whole epochs when L | E


def test_sequential_with_fewer_epochs_than_blocks_trains_every_block():
    """E < L (a quick budget): stages switch within an epoch, so no block is left at its initialisation."""
    ctx = Context(make_cfg(paradigm="sequential", epochs=1, n_train=400))  # 8 batches, 5 blocks
    calls = record_steps(ctx)
    PARADIGMS["sequential"](ctx, 0)
    assert [c[0] for c in calls] == [S(i) for i in (1, 1, 2, 2, 3, 4, 4, 5)]


# --- 3. Adaptive LPA stops ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("peaks,depths", [([2, 3], [3, 4]), ([None, None], [L, L])])
def test_adaptive_lpa_records_depth_and_reports_it(tmp_path, monkeypatch, peaks, depths):
    orig = Context.loss

    def loss(self, x, y, depth=None, metric=False):
        mse = orig(self, x, y, depth)
        d = self.model.depth if depth is None else depth
        m = torch.tensor([float(d) if p is None else -abs(d - p) for p in peaks])
        return (mse, m) if metric else mse
    monkeypatch.setattr(Context, "loss", loss)
    cfg = make_cfg(paradigm="adaptive_lpa", seeds=(0, 1), epochs=2, adaptive_warmup=1)
    train(cfg, tmp_path / "out", tmp_path / "ck", log=QUIET)
    s = pd.read_csv(tmp_path / "out/summary.csv")
    assert s.effective_depth.tolist() == depths
    assert s.reduction_pct.tolist() == [round(100 * (1 - d / L), 2) for d in depths]
    assert (s.n_blocks == L).all()
    # warm-up epoch: LPA, L+1 steps per batch; adaptive epoch: steps at depths 1..stop, then one at the chosen depth
    assert s.steps.tolist() == [NB * (L + 1) + NB * (min(d, L) + 1) for d in depths]


def test_adaptive_lpa_stops_when_a_deeper_block_hurts():
    """Real metric: block 3 adds a huge offset, so depth 3 is never better than depth 2 and no batch goes deeper."""
    ctx = Context(make_cfg(paradigm="adaptive_lpa", seeds=(0, 1), adaptive_warmup=0))
    with torch.no_grad():
        ctx.model.blocks[2].fc2.bias.fill_(1e3)
    PARADIGMS["adaptive_lpa"](ctx, 0)
    assert (ctx.state["depth"] <= 3).all() and (ctx.state["depth"] >= 2).all()
    assert (ctx.steps < NB * (L + 1)).all()


def test_adaptive_lpa_run_alpha_is_never_reset():
    """adaptive_alpha='run' (Alg. 2 as printed): alpha is the best metric ever seen, so after a batch reached its
    best at depth 5, later batches stop at depth 1 (nothing beats it); 'batch' resets alpha every batch."""
    for mode in ("run", "batch"):
        ctx = Context(make_cfg(paradigm="adaptive_lpa", adaptive_warmup=0, adaptive_alpha=mode))
        fake_metric(ctx, [None])
        calls = record_steps(ctx)
        PARADIGMS["adaptive_lpa"](ctx, 0)
        progressive, final = [c[0] for c in calls[:-NB]], [c[0] for c in calls[-NB:]]
        later = [P(1)] if mode == "run" else [P(i) for i in range(1, L + 1)]
        assert progressive == [P(i) for i in range(1, L + 1)] + later * (NB - 1)
        assert final == [P(L)] * NB and ctx.state["depth"].tolist() == [L]


# --- 4. the depth interface -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("topology,normalisation", [("cascade", "ingoing"), *TOPOLOGIES])
def test_full_depth_prediction_and_features(topology, normalisation):
    model = create_model("resmlp", seeds=[0, 1], d_in=2, d_out=1, width=6, depth=L, topology=topology, normalisation=normalisation)
    if hasattr(model.blocks[-1], "shortcut"):
        with torch.no_grad():  # coefficients away from their init, so every topology mixes for real
            for b in model.blocks:
                b.shortcut.add_(torch.rand(b.shortcut.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
    x = torch.rand(2, 2, 33) * 2 - 1
    with torch.no_grad():
        full = model(x)
        assert torch.equal(model(x, depth=L), full)
        feats = model.features(x)
        assert len(feats) == L and all(h.shape == (2, 6, 33) for h in feats)
        for k, h in enumerate(feats, start=1):
            assert torch.equal(model.head(h), model(x, depth=k))
        assert not torch.equal(model(x, depth=1), full)  # the depths do differ
    names = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert names(model.params(depth=2)) == names([*model.stem.parameters(), *model.blocks[0].parameters(),
                                                  *model.blocks[1].parameters(), *model.head.parameters()])
    assert names(model.params()) == names(model.parameters())
    with pytest.raises(ValueError, match="arch: unknown 'nope' \\(valid: resmlp, resnet18, "):
        create_model("nope", d_in=2, d_out=1)


def test_runs_have_own_init_and_same_seed_same_init():
    a = create_model("resmlp", seeds=[0, 1, 0], d_in=2, d_out=1, width=6, depth=2)
    b = create_model("resmlp", seeds=[1], d_in=2, d_out=1, width=6, depth=2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa[0], pa[2]) and torch.equal(pa[1], pb[0]) and not torch.equal(pa[0], pa[1])


# --- the optimizer --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("decoupled,reference", [(True, torch.optim.AdamW), (False, torch.optim.Adam)])
def test_run_adam_matches_torch_adam_per_run(decoupled, reference):
    """Three runs in one RunAdam, run 1 masked out of every third step, against one torch optimizer per run that
    steps only when its run does (float64, so any difference in the arithmetic would show)."""
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(3, 4, 5, generator=gen, dtype=torch.float64), torch.randn(3, 4, 1, generator=gen, dtype=torch.float64)]
    x = torch.randn(3, 5, 7, generator=gen, dtype=torch.float64)
    ours = [torch.nn.Parameter(w.clone()) for w in ws]
    opt = RunAdam(ours, lr=3e-2, weight_decay=0.1, decoupled=decoupled)
    refs = [[torch.nn.Parameter(w[r].clone()) for w in ws] for r in range(3)]
    ropts = [reference(p, lr=3e-2, weight_decay=0.1, foreach=False) for p in refs]
    for t in range(25):
        runs = None if t % 3 else torch.tensor([True, False, True])
        opt.zero_grad()
        loss = (torch.tanh(torch.baddbmm(ours[1], ours[0], x)) ** 2).sum(dim=(1, 2))
        (loss if runs is None else loss[runs]).sum().backward(inputs=ours)
        opt.step(ours, runs)
        for r in range(3):
            if runs is None or runs[r]:
                ropts[r].zero_grad()
                (torch.tanh(refs[r][1] + refs[r][0] @ x[r]) ** 2).sum().backward()
                ropts[r].step()
    for r in range(3):
        for p, q in zip(ours, refs[r]):
            torch.testing.assert_close(p[r].detach(), q.detach(), rtol=1e-12, atol=1e-12)
    assert not torch.equal(ours[0][0], ours[0][1])


# --- the fast path: hand-written backward, spans, per-run block masks ----------------------------------------------

KEEPS = {"all": None, "per_run": [torch.tensor([[True], [False], [True]]), None, torch.tensor([[False]] * 3), None, None],
         "per_example": [None, torch.rand(3, 40, generator=torch.Generator().manual_seed(1)) > 0.5, None, None, None]}


TOL = {torch.float64: 1e-12, torch.float32: 2e-5}  # the compiled kernels against autograd: sums in another order


@pytest.fixture(params=["torch", "c"])
def kernel(request, monkeypatch):
    """The fast path's two implementations: PyTorch ops (autograd's numbers bit for bit) and the compiled kernels
    (lpa_core.kernels: autograd's to rounding)."""
    monkeypatch.setenv("LPA_KERNEL", request.param)
    if request.param == "c" and kernels.library() is None:
        pytest.skip("no C compiler: the kernels cannot be built here")
    return request.param


def close(a, b, dtype, kernel):
    """Equal bit for bit on the PyTorch path; on the kernels' within TOL of the largest magnitude."""
    if kernel == "torch":
        return torch.equal(a, b)
    return bool(((a - b).abs() <= TOL[dtype] * b.abs().max().clamp_min(1e-30)).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("depth,first", [(None, 0), (3, 0), (3, 2), (1, 0)])
@pytest.mark.parametrize("keep", list(KEEPS))
def test_fast_backward_equals_autograd(kernel, dtype, depth, first, keep):
    """ResMLP.tape + ResMLP.backward against autograd on the same forward: predictions and every gradient of a
    step's parameters (prefix, sequential stage; layer dropout per run and per example) identical, bit for bit
    on the PyTorch path and to rounding on the kernels'; what the step does not train is never written."""
    gen = torch.Generator().manual_seed(0)
    model = ResMLP(seeds=(0, 1, 2), width=6, depth=L).to(dtype)
    x, y = torch.randn(3, 2, 40, generator=gen, dtype=dtype), torch.randn(3, 1, 40, generator=gen, dtype=dtype)
    params = model.params(depth, first)
    with model.dropping(KEEPS[keep]):
        pred, tape = model.tape(x, depth)
        ref = model(x, depth)
    assert isinstance(tape, kernels.Tape) == (kernel == "c")
    want = torch.autograd.grad((ref - y).pow(2).mean(dim=(1, 2)).sum(), params, allow_unused=True)  # None: a block no run kept
    for p in model.parameters():
        p.grad = torch.full_like(p, float("nan"))  # what the fast path does not write stays NaN
    err = pred - y
    model.backward(tape, err * (2.0 / err[0].numel()), {id(p) for p in params})
    assert close(pred, ref.detach(), dtype, kernel)
    for p, w in zip(params, want):
        assert p.grad.isnan().all() if w is None else close(p.grad, w, dtype, kernel)
    assert all(p.grad.isnan().all() for p in model.parameters() if all(p is not q for q in params))


@pytest.mark.parametrize("paradigm", ["simultaneous", "sequential", "lpa", "adaptive_lpa", "lpa_grouped", "layerdrop",
                                      "deep_supervision", "layerskip"])
def test_fast_path_trains_as_autograd(kernel, paradigm):
    """Three epochs through the fast path and through autograd (LPA_FAST=0's path): the same weights, optimizer
    state and counters (weight decay on, runs of different seeds, adaptive runs stopping apart). On the PyTorch path
    bit for bit in float32; on the kernels' to 1e-12 in float64 (in float32 Adam's normalised step turns rounding
    noise in a near-zero gradient into a full step, so trajectories part at the level of the learning rate)."""
    cfg = make_cfg(paradigm=paradigm, datasets=("saddle", "high_freq"), seeds=(0, 1), weight_decay=0.1, layerdrop_rate=0.4,
                   adaptive_warmup=1, layerskip_pmax=0.3)
    fast, slow = (Context(cfg) if kernel == "torch" else in_float64(Context(cfg)) for _ in range(2))
    slow.fast = False
    assert fast.fast
    for ctx in (fast, slow):
        for epoch in range(3):
            PARADIGMS[paradigm](ctx, epoch)
    for k in ("flat", "m", "v", "b1t", "b2t"):
        a, b = getattr(fast.opt, k), getattr(slow.opt, k)
        assert torch.equal(a, b) if kernel == "torch" else torch.allclose(a, b, rtol=0, atol=1e-12), k
    assert torch.equal(fast.steps, slow.steps) and torch.equal(fast.samples, slow.samples)


def in_float64(ctx):
    """A surface task's model, data and optimizer in float64 (the task itself is float32)."""
    model = ctx.model.double()
    for k in ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val"):
        setattr(ctx, k, getattr(ctx, k).double())
    o = ctx.opt
    ctx.opt = RunAdam(o.params, lr=o.lr, weight_decay=o.weight_decay, groups=[list(b.parameters()) for b in model.blocks])
    return ctx


def test_fast_path_refuses_a_stale_or_altered_loss():
    ctx = Context(make_cfg())
    x, y = next(ctx.batches())
    stale = ctx.loss(x, y)
    ctx.step(ctx.loss(x, y), ctx.model.params())
    with pytest.raises(RuntimeError, match="before the last optimizer step"):
        ctx.step(stale, ctx.model.params())
    with pytest.raises(RuntimeError, match="neither an autograd graph nor a tape"):
        ctx.step(2 * ctx.loss(x, y, defer=False), ctx.model.params())


def test_a_dropped_block_that_is_not_finite_spares_its_run_in_a_group():
    """Layer dropout per run in one step: run 1 drops block 3, whose weights are NaN; alone it would never compute
    it. Its loss stays finite, it is not marked diverged, and its stem, other blocks and head stay finite."""
    ctx = Context(make_cfg(seeds=(0, 1)))
    with torch.no_grad():
        ctx.model.blocks[2].fc2.weight[1] = float("nan")
    keep = torch.ones(2, L, dtype=torch.bool)
    keep[1, 2] = False
    x, y = next(ctx.batches())
    with ctx.model.dropping(list(keep.T[:, :, None])):
        losses = ctx.loss(x, y)
    ctx.step(losses, ctx.model.params(), blocks=keep)
    assert torch.isfinite(losses).all() and not ctx.bad.any() and ctx.steps.tolist() == [1, 1]
    for name, mod in modules(ctx.model).items():
        assert all(torch.isfinite(p[1]).all() for p in mod.parameters()) or name == "b3", name


def test_samples_count_the_real_size_of_a_partial_last_batch():
    ctx = Context(make_cfg(n_train=230))  # batches of 50, 50, 50, 50, 30
    simultaneous(ctx, 0)
    assert ctx.steps.tolist() == [5] and ctx.samples.tolist() == [230]


def test_prefix_steps_touch_one_span_and_a_checkpoint_of_another_layout_is_refused():
    ctx = Context(make_cfg())
    assert all(len(ctx.opt.spans(ctx.model.params(depth=d))) == 1 for d in range(1, L + 1))
    sd = ctx.opt.state_dict()
    del sd["layout"]
    with pytest.raises(ValueError, match="another parameter layout"):
        ctx.opt.load_state_dict(sd)


def test_cosine_lr():
    assert cosine_lr(0.01, 0, 10) == 0.01
    assert cosine_lr(0.01, 5, 10) == pytest.approx(0.005)
    assert 0 < cosine_lr(0.01, 9, 10) < 0.0005
    assert [cosine_lr(1.0, e, 10, warmup=2) for e in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert cosine_lr(1.0, 9, 10, final_frac=0.5) > 0.5
    lrs = [cosine_lr(1.0, e, 20) for e in range(20)]
    assert lrs == sorted(lrs, reverse=True)


# --- 5. vectorised runs match single runs ---------------------------------------------------------------------------

@pytest.mark.parametrize("paradigm", ["simultaneous", "lpa", "adaptive_lpa", "sequential", "lpa_grouped",
                                      "deep_supervision"])
def test_vectorised_group_matches_runs_trained_alone(tmp_path, paradigm):
    """2 datasets x 2 seeds as one vectorised model vs each run alone. (On CPU they agree bit for bit; the test
    allows rtol 1e-5.) For adaptive_lpa the runs of the group choose different depths, so the masked steps matter."""
    kw = dict(paradigm=paradigm, epochs=3, adaptive_warmup=1, depth=4, batch_size=100 if paradigm == "adaptive_lpa" else 50)
    train(make_cfg(datasets=("saddle", "high_freq"), seeds=(0, 1), **kw), tmp_path / "group", tmp_path / "ck_g", log=QUIET)
    group = pd.read_csv(tmp_path / "group/layerwise.csv")
    gsum = pd.read_csv(tmp_path / "group/summary.csv")
    alone = []
    for d in ("saddle", "high_freq"):
        for s in (0, 1):
            out = tmp_path / f"{d}_{s}"
            train(make_cfg(datasets=(d,), seeds=(s,), **kw), out, tmp_path / f"ck_{d}_{s}", log=QUIET)
            alone.append(pd.read_csv(out / "layerwise.csv"))
            one = pd.read_csv(out / "summary.csv")
            row = gsum[(gsum.dataset == d) & (gsum.seed == s)]
            assert row.steps.tolist() == one.steps.tolist()
            assert row.effective_depth.tolist() == one.effective_depth.tolist()
    alone = pd.concat(alone, ignore_index=True)
    if paradigm == "adaptive_lpa":
        assert gsum.effective_depth.nunique() > 1, gsum.effective_depth.tolist()
    keys = ["dataset", "seed", "depth", "metric"]
    assert group[keys].values.tolist() == alone[keys].values.tolist()
    a, b = torch.tensor(group.value.values), torch.tensor(alone.value.values)
    assert torch.isfinite(a).all()
    assert torch.allclose(a, b, rtol=1e-5, atol=0), (a - b).abs().max()


# --- 7. divergence --------------------------------------------------------------------------------------------------

def test_diverged_run_stops_updating_and_spares_the_others():
    ctx = Context(make_cfg(seeds=(0, 1)))
    alone = Context(make_cfg(seeds=(0,)))
    with torch.no_grad():
        ctx.model.stem.weight[1, 0, 0] = float("nan")
    frozen = [p[1].detach().clone() for p in ctx.model.parameters()]
    for epoch in range(2):
        simultaneous(ctx, epoch)
        simultaneous(alone, epoch)
    assert ctx.bad.tolist() == [False, True]
    assert ctx.steps.tolist() == [2 * NB, 0]
    for p, f in zip(ctx.model.parameters(), frozen):
        torch.testing.assert_close(p[1].detach(), f, rtol=0, atol=0, equal_nan=True)
    for p, q in zip(ctx.model.parameters(), alone.model.parameters()):
        assert torch.allclose(p[0], q[0], rtol=1e-5, atol=0)


def test_a_run_is_judged_only_on_the_losses_it_steps_on():
    """In a vectorised adaptive group, losses are computed for every run at every depth some run still trains; a
    run that stopped at depth 2 must not be marked diverged by its (unused) NaN at depth 5, as it would not be alone."""
    ctx = Context(make_cfg(paradigm="adaptive_lpa", seeds=(0, 1), adaptive_warmup=0))
    fake_metric(ctx, [None, 1])  # run 0 goes to depth L, run 1 stops at 2
    with torch.no_grad():
        ctx.model.blocks[L - 1].fc1.weight[1] = float("nan")
    PARADIGMS["adaptive_lpa"](ctx, 0)
    assert ctx.bad.tolist() == [False, False]
    assert ctx.state["depth"].tolist() == [L, 2] and ctx.steps.tolist() == [NB * (L + 1), NB * 3]


@pytest.mark.parametrize("epochs,n_train", [(1, 50), (3, 200)])
def test_blow_up_is_recorded_diverged_even_on_the_last_step(tmp_path, epochs, n_train):
    """lr 1e6: with one batch in one epoch the only loss seen is finite, but the weights it leaves predict inf/NaN."""
    cfg = make_cfg(seeds=(0, 1), lr=1e6, epochs=epochs, n_train=n_train)
    status = train(cfg, tmp_path / "out", tmp_path / "ck", log=QUIET)
    assert status == ["diverged", "diverged"]
    s = pd.read_csv(tmp_path / "out/summary.csv")
    assert s.status.tolist() == ["diverged"] * 2 and s.diverged_epoch.between(1, epochs).all()
    lw = pd.read_csv(tmp_path / "out/layerwise.csv")
    assert (lw.status == "diverged").all() and lw.value.isna().all()


# --- 9. resume ------------------------------------------------------------------------------------------------------

def test_default_checkpoint_dir_is_never_inside_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_ckpt_dir("results/runs/x") == Path("checkpoints/results/runs/x")
    assert default_ckpt_dir(tmp_path / "results/runs/x") == Path("checkpoints/results/runs/x")  # same job, same ckpt
    assert default_ckpt_dir("/elsewhere/runs/x") == Path("checkpoints/elsewhere/runs/x")
    assert default_ckpt_dir("../runs/x") == Path("checkpoints") / Path(os.path.abspath("../runs/x")).relative_to("/")
    for out in ("results/runs/x", tmp_path / "results/runs/x", "/elsewhere/runs/x", "../runs/x"):
        ck, o = Path(os.path.abspath(default_ckpt_dir(out))), Path(os.path.abspath(out))
        assert o not in ck.parents and ck != o


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("paradigm", ["lpa", "adaptive_lpa"])
def test_resume_after_interrupt_matches_uninterrupted(tmp_path, monkeypatch, paradigm):
    """In-process: the job dies in epoch 3 (after the epoch-2 checkpoint); restarted, it ends with the same
    numbers, history included. adaptive_lpa with alpha='run' carries paradigm state across the restart."""
    cfg = make_cfg(paradigm=paradigm, seeds=(0, 1), epochs=4, adaptive_warmup=1, adaptive_alpha="run", ckpt_every_s=0)
    train(cfg, tmp_path / "ref", tmp_path / "ck_ref", log=QUIET)
    real = PARADIGMS[paradigm]

    def dying(ctx, epoch):
        if epoch == 2:
            raise Interrupt
        real(ctx, epoch)
    monkeypatch.setattr(train_mod, "get_paradigm", lambda name: dying)
    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "out", tmp_path / "ck", log=QUIET)
    assert not (tmp_path / "out").exists()
    monkeypatch.undo()
    logs = []
    train(cfg, tmp_path / "out", tmp_path / "ck", log=logs.append)
    assert any("resuming" in m and "at epoch 2" in m for m in logs)
    for name in ("layerwise.csv", "summary.csv", "history.csv"):
        a, b = pd.read_csv(tmp_path / "ref" / name), pd.read_csv(tmp_path / "out" / name)
        pd.testing.assert_frame_equal(a.drop(columns="wall_s", errors="ignore"), b.drop(columns="wall_s", errors="ignore"))


def test_checkpoint_of_another_config_is_not_resumed(tmp_path):
    train(make_cfg(epochs=2, ckpt_every_s=0), tmp_path / "a", tmp_path / "ck", log=QUIET)
    logs = []
    train(make_cfg(epochs=3, ckpt_every_s=0), tmp_path / "b", tmp_path / "ck", log=logs.append)
    assert any("starting afresh" in m for m in logs)
    train(make_cfg(epochs=3, ckpt_every_s=0), tmp_path / "c", tmp_path / "ck_c", log=QUIET)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b/layerwise.csv"), pd.read_csv(tmp_path / "c/layerwise.csv"))


OUTPUTS = ("layerwise.csv", "history.csv", "summary.csv", "grid.npz", "run.json", "coeffs.csv")


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    """A real `python -m lpa_core train`, SIGKILLed once its first checkpoint exists, then restarted with the same
    arguments: no output file exists after the kill, and the restarted job ends with the uninterrupted numbers."""
    cfg = make_cfg(paradigm="lpa", datasets=("saddle", "high_freq"), seeds=(0, 1), depth=4, epochs=25,
                   eval_every=5, ckpt_every_s=0)
    args = [a for k, v in cfg.to_dict().items()  # the very same config, key by key, on the command line
            for a in (f"--{k}", ",".join(map(str, v)) if isinstance(v, list) else str(v))]
    train(cfg, tmp_path / "ref", tmp_path / "ck_ref", log=QUIET)  # uninterrupted, in process: same CPU arithmetic

    out, ck = tmp_path / "out", tmp_path / "ck"
    cmd = [sys.executable, "-m", "lpa_core", "train", "--out", str(out), "--ckpt-dir", str(ck), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (ck / "last.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not any((out / name).exists() for name in OUTPUTS), "a killed job left an output that looks complete"
    # outputs are written only at the end, each atomically; the run lock (<out>/.lock) is all a killed job leaves
    assert not out.exists() or {p.name for p in out.iterdir()} <= {".lock"}

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = [line for line in again.stderr.splitlines() if "resuming from" in line]
    assert resumed, again.stderr
    epoch0 = int(resumed[0].rsplit("at epoch ", 1)[1])
    assert 1 <= epoch0 < 25
    for name in ("layerwise.csv", "summary.csv", "history.csv"):
        a, b = pd.read_csv(tmp_path / "ref" / name), pd.read_csv(out / name)
        pd.testing.assert_frame_equal(a.drop(columns="wall_s", errors="ignore"), b.drop(columns="wall_s", errors="ignore"))
    assert not list(out.glob(".*tmp*"))
    assert json.loads((out / "run.json").read_text())["config"] == cfg.to_dict()


# --- GPU ------------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("paradigm", ["simultaneous", "lpa", "adaptive_lpa", "sequential"])
def test_cuda_matches_cpu(tmp_path, paradigm):
    kw = dict(paradigm=paradigm, datasets=("saddle", "high_freq"), seeds=(0, 1), epochs=3, depth=4)
    train(make_cfg(**kw), tmp_path / "cpu", tmp_path / "ck_cpu", log=QUIET)
    train(make_cfg(device="cuda", **kw), tmp_path / "gpu", tmp_path / "ck_gpu", log=QUIET)
    a, b = pd.read_csv(tmp_path / "cpu/layerwise.csv"), pd.read_csv(tmp_path / "gpu/layerwise.csv")
    assert (b.status == "ok").all()
    assert torch.allclose(torch.tensor(a.value.values), torch.tensor(b.value.values), rtol=1e-3, atol=1e-5)
