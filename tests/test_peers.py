"""The LayerSkip and LayerDrop peers: LayerDrop's dropped blocks get no update at all (bit for bit), both reduce to
Simultaneous when their dropout and exits are off (bit for bit), the curriculum, dropout and loss-scale schedules,
per-example gating against a hand computation (residual MLP, ResNet, ViT), LayerDrop's pruning pattern, group vs
alone, resume, and tiny runs through the one loop on the surfaces and on tiny vision models. CPU, seconds each."""
import io

import numpy as np
import pandas as pd
import pytest
import torch

from lpa_core import vision
from lpa_core.config import TrainConfig
from lpa_core.images import Spec, TensorImages
from lpa_core.models import ResMLP, keep_pattern
from lpa_core.paradigms import PARADIGMS, simultaneous
from lpa_core.paradigms.layerskip import dropout_rates, exit_depths, exit_weights
from lpa_core.train import Context, train
from lpa_core.vision import VisionTask
from lpa_core.registry import create_model

torch.set_num_threads(1)
QUIET = lambda msg: None  # noqa: E731
L = 5


def make_cfg(**kw):
    base = dict(datasets=("saddle",), seeds=(0, 1), depth=L, width=6, n_train=200, n_test=100, batch_size=50, epochs=2,
                lr=1e-2, weight_decay=0.1, grid=8, eval_every=1, ckpt_every_s=1e9)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def tiny(monkeypatch):
    """Vision tasks load 8 x 8 images of 3 classes (24 train, 12 test) the test makes."""
    g = torch.Generator().manual_seed(0)
    split = {k: (torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8), torch.randint(0, 3, (n,), generator=g))
             for k, n in (("train", 24), ("test", 12))}
    vision._DATA.clear()
    monkeypatch.setattr(vision, "load_images", lambda name, cfg: TensorImages("tiny", Spec(3, 3, 8, (0.5,) * 3, (0.25,) * 3), split, cfg.device))
    yield
    vision._DATA.clear()


def vcfg(arch="resnet10_w16", **kw):
    base = dict(arch=arch, datasets=("cifar10",), seeds=(0,), epochs=2, batch_size=8, lr=0.05 if "resnet" in arch else 1e-3,
                weight_decay=5e-4 if "resnet" in arch else 0.05, eval_every=1, n_embed=0, ckpt_every_s=1e9)
    return TrainConfig(**{**base, **kw})


def run_epochs(ctx, paradigm, epochs=2):
    for e in range(epochs):
        PARADIGMS[paradigm](ctx, e)
    return ctx


def state(ctx):
    """Every weight, buffer and optimizer-state tensor of a task, flattened (surfaces: RunAdam; vision: torch.optim)."""
    ts = [t for t in ctx.model.state_dict().values()]
    if hasattr(ctx.opt, "m"):
        ts += [ctx.opt.m, ctx.opt.v, ctx.opt.b1t, ctx.opt.b2t]
    else:
        ts += [v for s in ctx.opt.state.values() for v in s.values() if torch.is_tensor(v)]
    return torch.cat([t.detach().float().flatten() for t in ts])


# --- schedules --------------------------------------------------------------------------------------------------------

def test_rotational_curriculum_rotates_every_c_th_block_and_keeps_the_full_depth():
    assert [exit_depths(6, "rotational", t, 0.0, every=2) for t in range(3)] == [[2, 4, 6], [1, 3, 5, 6], [2, 4, 6]]
    assert [exit_depths(6, "rotational", t, 0.0, every=3) for t in range(4)] == [[3, 6], [1, 4, 6], [2, 5, 6], [3, 6]]
    assert exit_depths(6, "none", 5, 0.9) == [6]


def test_gradual_curriculum_enables_from_the_last_block_down():
    """Exit j < L switches on once progress >= 0.5 (L - j + 1) / L: L-1 at 1/6, ..., block 1 at 1/2."""
    got = {p: exit_depths(6, "gradual", 0, p) for p in (0.0, 0.1, 1 / 6, 0.25, 0.49, 0.5, 0.9)}
    assert got == {0.0: [6], 0.1: [6], 1 / 6: [5, 6], 0.25: [4, 5, 6], 0.49: [2, 3, 4, 5, 6], 0.5: [1, 2, 3, 4, 5, 6],
                   0.9: [1, 2, 3, 4, 5, 6]}


def test_layerskip_takes_the_exits_the_curriculum_names_at_each_step(monkeypatch):
    """Over two epochs of 4 batches (rotational, C = 2): the depths whose loss enters each step."""
    ctx = Context(make_cfg(paradigm="layerskip", epochs=2, layerskip_rotation=2))
    used, exits = [], ctx.exits
    monkeypatch.setattr(ctx, "exits", lambda x, y, depths, weights=None: used.append(list(depths)) or exits(x, y, depths, weights))
    run_epochs(ctx, "layerskip")
    assert used == [exit_depths(L, "rotational", t, 0.0, 2) for t in range(8)] == [[2, 4, 5], [1, 3, 5]] * 4
    assert int(ctx.state["layerskip_step"]) == 8


def test_exit_weights_and_dropout_rates():
    w = exit_weights([2, 4, 6], 6, e_scale=1.0)
    assert w == pytest.approx([3 / 34, 10 / 34, 21 / 34]) and sum(w) == pytest.approx(1)
    assert exit_weights([1, 3, 6], 6, e_scale=0.0) == [0.0, 0.0, 1.0] and exit_weights([6], 6) == [1.0]
    exp = dropout_rates(5, 0.2, "exp")
    assert exp[0] == 0 and exp[-1] == pytest.approx(0.2) and exp == pytest.approx([0.2 * (2 ** (i / 4) - 1) for i in range(5)])
    assert dropout_rates(5, 0.2, "linear") == pytest.approx([0, 0.05, 0.1, 0.15, 0.2]) and dropout_rates(1, 0.3) == [0.3]


def test_layerdrop_pruning_keeps_every_other_block():
    assert keep_pattern(6, 0.5) == [True, False] * 3
    assert keep_pattern(6, 0.25) == [True, True, True, False, True, True]
    assert keep_pattern(6, 1 / 3) == [True, True, False] * 2 and keep_pattern(4, 0) == [True] * 4
    with pytest.raises(ValueError, match="^rate: "):
        keep_pattern(6, 0.6)


@pytest.mark.parametrize("kw,key", [(dict(layerdrop_rate=1.0), "layerdrop_rate"), (dict(layerskip_pmax=-0.1), "layerskip_pmax"),
                                    (dict(layerskip_curriculum="random"), "layerskip_curriculum"),
                                    (dict(layerskip_scale="log"), "layerskip_scale"), (dict(layerskip_rotation=0), "layerskip_rotation"),
                                    (dict(layerskip_exit_scale=-1.0), "layerskip_exit_scale")])
def test_config_errors_name_the_key(kw, key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        TrainConfig(**kw)


# --- per-example gating against a hand computation ----------------------------------------------------------------------

def test_per_example_gating_on_the_residual_mlp_matches_a_hand_computation():
    """keep[j] [R, B] per run and [B] for every run: x_j = x_{j-1} + keep * F_j(x_{j-1}); a block kept by no
    example is not called."""
    model = ResMLP([0, 1], d_in=2, d_out=1, width=4, depth=3)
    x = torch.randn(2, 2, 7)
    g = torch.Generator().manual_seed(0)
    for keep in ([torch.rand(2, 7, generator=g) > 0.5 for _ in range(3)], [torch.rand(7, generator=g) > 0.5 for _ in range(3)]):
        with model.dropping(keep):
            got = model.features(x)
        h, want = model.stem(x), []
        for block, k in zip(model.blocks, keep):
            h = h + block(h) * k.float().view(-1 if k.dim() == 2 else 1, 1, 7).expand(2, 1, 7)
            want.append(h)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, want))
    model.blocks[1].forward = lambda h: pytest.fail("a block no example keeps was computed")
    with model.dropping([None, torch.zeros(7, dtype=torch.bool), True]):
        hs = model.features(x)
    assert torch.equal(hs[1], hs[0])


@pytest.mark.parametrize("arch", ["resnet10_w16", "vit6_d64"])
def test_per_example_gating_on_vision_stacks_matches_a_hand_computation(arch):
    """Eval mode (BatchNorm must not mix examples): example b's depth-L output is the stack run with only the
    blocks b keeps, a dropped block leaving its parameter-free projection of the input (identity in a ViT,
    pool + zero-pad at a ResNet stage change)."""
    torch.manual_seed(0)
    model = create_model(arch, d_in=(3, 32, 32), d_out=3).eval()
    x = torch.randn(4, 3, 32, 32)
    keep = [torch.tensor(k) for k in ([1, 0, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 1, 1])[:model.depth]]
    with torch.no_grad(), model.dropping([k.bool() for k in keep]):
        got = model(x)
    for b in range(4):
        with torch.no_grad():
            h = model.stem(x[b:b + 1])
            for j, (block, k) in enumerate(zip(model.blocks, keep), 1):
                h = block(h) if k[b] else model.project(h, j, h)
            assert torch.allclose(got[b], model.head(h)[0], atol=1e-5), b


# --- LayerDrop: dropped blocks untouched ----------------------------------------------------------------------------

def test_layerdrop_dropped_blocks_get_no_update_bit_for_bit_on_the_surfaces():
    """After a warm-up epoch (Adam moments, step counts and weight decay at work everywhere): in every step, each
    run's dropped blocks keep weights, m, v and step counts bit for bit and its kept ones all move. Runs of
    different seeds drop different blocks, in one step (`blocks` says which blocks each run keeps)."""
    ctx = Context(make_cfg(paradigm="layerdrop", layerdrop_rate=0.5, datasets=("saddle", "high_freq"), seeds=(0, 1)))
    simultaneous(ctx, 0)
    opt, real, seen = ctx.opt, ctx.step, []

    def blocks_of(r):
        return [torch.cat([t[r, slice(*opt.slices[p])] for p in b.parameters() for t in (opt.flat, opt.m, opt.v, opt.b1t, opt.b2t)])
                for b in ctx.model.blocks]

    def step(losses, params, runs=None, blocks=None):
        ids = {id(p) for p in params}
        kept = [all(id(p) in ids for p in b.parameters()) for b in ctx.model.blocks]
        before = [blocks_of(r) for r in range(ctx.n_runs)]
        real(losses, params, runs, blocks)
        for r in range(ctx.n_runs):
            active = runs is None or bool(runs[r])
            for j, (a, b) in enumerate(zip(before[r], blocks_of(r))):
                assert torch.equal(a, b) != (active and kept[j] and (blocks is None or bool(blocks[r, j]))), (r, j, kept)
        seen.append(None if blocks is None else blocks.clone())

    ctx.step = step
    PARADIGMS["layerdrop"](ctx, 1)
    patterns = [b for b in seen if b is not None]
    assert patterns and any(not b.all() for b in patterns) and any(len(b.unique(dim=0)) > 1 for b in patterns)
    assert ctx.steps.tolist() == [8] * 4  # warm-up + this epoch: every run steps once per batch, whatever it dropped


def test_layerdrop_dropped_blocks_get_no_update_bit_for_bit_on_a_resnet(tiny, monkeypatch):
    """SGD with Nesterov momentum and weight decay: a dropped block keeps weights, momentum buffers and BatchNorm
    statistics bit for bit and gets no gradient; every kept block moves."""
    task = VisionTask(vcfg(paradigm="layerdrop", layerdrop_rate=0.5))
    simultaneous(task, 0)
    real, seen = task.step, []
    snap = lambda b: [t.detach().clone() for t in (*b.state_dict().values(), *(task.opt.state[p]["momentum_buffer"] for p in b.parameters()))]

    def step(losses, params, runs=None, blocks=None):
        assert blocks is None  # one run: the parameters list is the pattern
        ids = {id(p) for p in params}
        kept = [all(id(p) in ids for p in b.parameters()) for b in task.model.blocks]
        before = [snap(b) for b in task.model.blocks]
        real(losses, params, runs)
        for k, b, s in zip(kept, task.model.blocks, before):
            same = all(torch.equal(u, v) for u, v in zip(s, snap(b)))
            assert same != k and (k or all(p.grad is None for p in b.parameters()))
        seen.append(kept)

    task.step = step
    PARADIGMS["layerdrop"](task, 1)
    assert any(not all(k) for k in seen)


# --- reductions to Simultaneous (bit for bit) -------------------------------------------------------------------------

PEERS_OFF = [("layerdrop", dict(layerdrop_rate=0.0)), ("layerskip", dict(layerskip_pmax=0.0, layerskip_curriculum="none")),
             ("layerskip", dict(layerskip_pmax=0.0, layerskip_exit_scale=0.0))]


@pytest.mark.parametrize("paradigm,kw", PEERS_OFF)
def test_peer_with_dropout_and_exits_off_is_simultaneous_bit_for_bit_on_the_surfaces(paradigm, kw):
    ref = run_epochs(Context(make_cfg(datasets=("saddle", "high_freq"))), "simultaneous")
    got = run_epochs(Context(make_cfg(paradigm=paradigm, datasets=("saddle", "high_freq"), **kw)), paradigm)
    assert torch.equal(state(ref), state(got)) and torch.equal(ref.steps, got.steps)


@pytest.mark.parametrize("paradigm,kw", PEERS_OFF[:2])
@pytest.mark.parametrize("arch", ["resnet10_w16", "vit6_d64"])
def test_peer_with_dropout_and_exits_off_is_simultaneous_bit_for_bit_on_vision(tiny, arch, paradigm, kw):
    ref = run_epochs(VisionTask(vcfg(arch)), "simultaneous", 1)
    got = run_epochs(VisionTask(vcfg(arch, paradigm=paradigm, **kw)), paradigm, 1)
    assert torch.equal(state(ref), state(got))


# --- group vs alone, resume -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("paradigm", ["layerdrop", "layerskip"])
def test_vectorised_group_matches_runs_trained_alone(tmp_path, paradigm):
    """Draws come from each run's seed, so a run trains the same in a group of 2 datasets x 2 seeds as alone."""
    kw = dict(paradigm=paradigm, layerdrop_rate=0.4, layerskip_pmax=0.5)
    train(make_cfg(datasets=("saddle", "high_freq"), seeds=(0, 1), **kw), tmp_path / "g", tmp_path / "ckg", log=QUIET)
    group = pd.read_csv(tmp_path / "g/layerwise.csv")
    alone = []
    for d in ("saddle", "high_freq"):
        for s in (0, 1):
            train(make_cfg(datasets=(d,), seeds=(s,), **kw), tmp_path / f"{d}{s}", tmp_path / f"ck{d}{s}", log=QUIET)
            alone.append(pd.read_csv(tmp_path / f"{d}{s}/layerwise.csv"))
    alone = pd.concat(alone, ignore_index=True)
    np.testing.assert_allclose(group.value, alone.value, rtol=1e-5)
    assert group.drop(columns="value").equals(alone.drop(columns="value"))


@pytest.mark.parametrize("paradigm", ["layerdrop", "layerskip"])
def test_resume_from_a_checkpoint_draws_what_an_uninterrupted_run_draws(paradigm):
    """Epoch 1 after a weights_only checkpoint round trip of epoch 0's task = epoch 1 uninterrupted."""
    cfg = make_cfg(paradigm=paradigm, layerdrop_rate=0.4, layerskip_pmax=0.5, layerskip_curriculum="gradual")
    ref = run_epochs(Context(cfg), paradigm)
    first = run_epochs(Context(cfg), paradigm, 1)
    buf = io.BytesIO()
    torch.save(first.checkpoint(), buf)
    buf.seek(0)
    again = Context(cfg)
    again.restore(torch.load(buf, weights_only=True))
    PARADIGMS[paradigm](again, 1)
    assert torch.equal(state(ref), state(again))


# --- tiny runs through the one loop ------------------------------------------------------------------------------------

@pytest.mark.parametrize("paradigm", ["layerskip", "layerdrop"])
def test_tiny_surface_run(tmp_path, paradigm):
    cfg = make_cfg(paradigm=paradigm, datasets=("saddle", "high_freq"), layerskip_curriculum="gradual", epochs=3)
    assert train(cfg, tmp_path, tmp_path / "ck", log=QUIET) == ["ok"] * 4
    lw, s = pd.read_csv(tmp_path / "layerwise.csv"), pd.read_csv(tmp_path / "summary.csv")
    assert len(lw) == 4 * L * 2 and np.isfinite(lw.value).all() and (s.steps == 3 * 4).all()
    pruned = tmp_path / "pruned.csv"
    assert pruned.exists() == (paradigm == "layerdrop")
    if paradigm == "layerdrop":
        p = pd.read_csv(pruned)
        assert sorted(set(zip(p.rate, p.blocks_kept))) == [(0.25, 4), (0.5, 3)] and len(p) == 2 * 4 * 2
        assert np.isfinite(p.value).all()


@pytest.mark.parametrize("paradigm", ["layerskip", "layerdrop"])
@pytest.mark.parametrize("arch", ["resnet10_w16", "vit6_d64"])
def test_tiny_vision_run(tiny, tmp_path, arch, paradigm):
    cfg = vcfg(arch, paradigm=paradigm, layerskip_pmax=0.5, layerdrop_rate=0.4)
    assert train(cfg, tmp_path, tmp_path / "ck", log=QUIET) == ["ok"]
    lw = pd.read_csv(tmp_path / "layerwise.csv")
    assert np.isfinite(lw.value).all() and pd.read_csv(tmp_path / "summary.csv").steps[0] == 2 * 3
    if paradigm == "layerdrop":
        p = pd.read_csv(tmp_path / "pruned.csv")
        assert set(p.metric) == {"test_acc_pct", "test_loss"} and np.isfinite(p.value).all() and len(p) == 4
