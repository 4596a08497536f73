"""Residual topologies (lpa_core.topology): coefficient normalisation, one-hot coefficients reproduce fixed
topologies exactly, ANCRe under LPA leaves inactive blocks and their coefficients untouched bit for bit, every
topology trains and writes coeffs.csv, unnormalised ANCRe may diverge but is recorded, the Fig 6 heatmap."""
import argparse
import json
import math

import pandas as pd
import pytest
import torch

from lpa_core.config import TrainConfig
from lpa_core.paradigms import PARADIGMS, simultaneous
from lpa_core.report import add_commands, heatmap
from lpa_core.runs import RunError, finish_run
from lpa_core.topology import TOPOLOGIES, coefficients, make_topology
from lpa_core.train import Context, train
from lpa_core.registry import create_model

L = 5
NB = 4  # batches per epoch: n_train 200 / batch_size 50
QUIET = lambda msg: None  # noqa: E731
torch.set_num_threads(1)
VARIANTS = [("cascade", "ingoing"), ("ancre", "ingoing"), ("ancre", "outgoing"), ("ancre", "none"),
            ("all_fixed", "ingoing"), ("gains", "ingoing")]


def make_cfg(**kw):
    base = dict(datasets=("saddle",), seeds=(0,), depth=L, width=6, n_train=200, n_test=200, batch_size=50,
                epochs=2, lr=1e-2, grid=8, eval_every=1, ckpt_every_s=1e9, topology="ancre")
    base.update(kw)
    return TrainConfig(**base)


def model(topology="ancre", normalisation="ingoing", seeds=(0, 1), depth=L, wiring="replace"):
    return create_model("resmlp", seeds=list(seeds), d_in=2, d_out=1, width=6, depth=depth, topology=topology,
                        normalisation=normalisation, wiring=wiring)


def set_logits(m, src, tau=0.1):
    """Logits making p one-hot on i = src(j) for every block j: 0 there, -1e4 elsewhere (exp underflows to 0)."""
    with torch.no_grad():
        for j, b in enumerate(m.blocks, 1):
            b.shortcut.fill_(-1e4)
            b.shortcut[:, src(j)] = 0.0


def by_hand(m, x, src, coeff=None):
    """x_j = F_j(x_{j-1}) + x_src(j) (or + sum_i coeff(j) x_i), written out with the blocks' branches."""
    xs = [m.stem(x)]
    for j, b in enumerate(m.blocks, 1):
        f = b(xs[-1])
        xs.append(f + xs[src(j)] if coeff is None else f + sum(coeff(j) * h for h in xs))
    return xs[1:]


def matrix(m):
    """P[r, i, j-1] = p_ij from coefficients(), 0 where i >= j."""
    P = torch.zeros(m.n_runs, L, L)
    for r, j, i, p in coefficients(m):
        P[r, i, j - 1] = p
    return P


# --- configuration --------------------------------------------------------------------------------------------------

def test_unknown_names_and_bad_tau_are_one_line_errors():
    with pytest.raises(ValueError, match=r"topology: unknown 'nope' \(valid: cascade, ancre, all_fixed, gains\)"):
        make_topology("nope")
    with pytest.raises(ValueError, match=r"topology: unknown 'x' \(valid: cascade, ancre, all_fixed, gains\)"):
        make_cfg(topology="x")
    with pytest.raises(ValueError, match=r"normalisation: unknown 'sideways' \(valid: ingoing, outgoing, none\)"):
        make_cfg(normalisation="sideways")
    with pytest.raises(ValueError, match="tau: must be > 0, got 0"):
        make_cfg(tau=0.0)
    assert TrainConfig().topology == "cascade" and TrainConfig().tau == 0.1 and TrainConfig().normalisation == "ingoing"


def test_each_block_owns_its_coefficients_and_params_carry_them():
    m = model()
    assert [tuple(b.shortcut.shape) for b in m.blocks] == [(2, j) for j in range(1, L + 1)]
    ids = {id(p) for p in m.params(depth=2)}
    assert all((id(b.shortcut) in ids) == (j <= 2) for j, b in enumerate(m.blocks, 1))
    assert all(torch.equal(b.shortcut[0], b.shortcut[1]) for b in m.blocks)  # same init in every run
    assert [tuple(b.shortcut.shape) for b in model("gains").blocks] == [(2, 1, 1)] * L
    assert not any("shortcut" in n for n, _ in model("cascade").named_parameters())
    assert not any("shortcut" in n for n, _ in model("all_fixed").named_parameters())


# --- coefficients ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("normalisation", ["ingoing", "outgoing"])
def test_coefficients_sum_to_one(normalisation):
    m = model(normalisation=normalisation)
    P0 = matrix(m)
    with torch.no_grad():
        for b in m.blocks:
            b.shortcut.normal_(0, 0.2)  # logits / tau of order 2: far from uniform, far from one-hot
    P = matrix(m)
    tri = torch.ones(L, L).triu().bool()  # i <= j-1
    assert (P[:, ~tri] == 0).all() and (P[:, tri] > 0).all()
    if normalisation == "ingoing":  # sum over i = 0..j-1; zero logits: uniform 1/j
        assert torch.allclose(P.sum(1), torch.ones(2, L)) and torch.allclose(P0[0, 0, :], 1 / torch.arange(1, L + 1))
    else:  # sum over j = i+1..L for every source i = 0..L-1; zero logits: 1/(L-i)
        assert torch.allclose(P.sum(2), torch.ones(2, L)) and torch.allclose(P0[0, :, -1], 1 / (L - torch.arange(L)))


@pytest.mark.parametrize("topology,normalisation", [("ancre", "ingoing"), ("ancre", "outgoing")])
def test_one_hot_ancre_is_cascade_bit_for_bit(topology, normalisation):
    ref, m = model("cascade"), model(topology, normalisation)
    set_logits(m, lambda j: j - 1)
    x = torch.rand(2, 2, 33) * 2 - 1
    with torch.no_grad():
        for d in (1, 3, None):
            assert torch.equal(m(x, d), ref(x, d))
        assert all(torch.equal(a, b) for a, b in zip(m.features(x), ref.features(x)))


@pytest.mark.parametrize("topology,normalisation", [("ancre", "none"), ("gains", "ingoing")])
def test_unnormalised_and_gains_start_as_cascade_bit_for_bit(topology, normalisation):
    ref, m = model("cascade"), model(topology, normalisation)
    x = torch.rand(2, 2, 33) * 2 - 1
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(m.features(x), ref.features(x)))
    assert torch.equal(matrix(m), matrix(ref))


@pytest.mark.parametrize("name,src", [("all_from_input", lambda j: 0), ("skip_two", lambda j: max(0, j - 2)),
                                      ("mixed", lambda j: [0, 0, 1, 0, 3][j - 1])])
def test_one_hot_ingoing_patterns_are_the_fixed_topology_bit_for_bit(name, src):
    m = model("ancre", "ingoing")
    set_logits(m, src)
    x = torch.rand(2, 2, 33) * 2 - 1
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(m.features(x), by_hand(m, x, src)))
        assert not torch.equal(m(x), model("cascade")(x))


def test_all_fixed_is_the_uniform_mix_and_gains_scale_the_cascade():
    x = torch.rand(2, 2, 33) * 2 - 1
    m = model("all_fixed")
    with torch.no_grad():
        for a, b in zip(m.features(x), by_hand(m, x, None, coeff=lambda j: 1 / j)):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-6)
        g = model("gains")
        for j, b in enumerate(g.blocks, 1):
            b.shortcut.fill_(0.5 * j)
        xs = [g.stem(x)]
        for j, b in enumerate(g.blocks, 1):
            xs.append(b(xs[-1]) + 0.5 * j * xs[-1])
        for a, b in zip(g.features(x), xs[1:]):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-6)
    assert [p for _, j, i, p in coefficients(g) if i == j - 1][:L] == [0.5 * j for j in range(1, L + 1)]


# --- wiring: replace (the paper's text) and add (the authors' code) --------------------------------------------------

def add_by_hand(m, x, coeff):
    """x_j = x_{j-1} + F_j(x_{j-1}) + sum_i coeff(j)[i] x_i: the authors' wiring, written out with the branches."""
    xs = [m.stem(x)]
    for j, b in enumerate(m.blocks, 1):
        xs.append(xs[-1] + b(xs[-1]) + sum(c * h for c, h in zip(coeff(j), xs)))
    return xs[1:]


def test_wiring_is_a_config_key_resolved_per_task():
    assert TrainConfig().wiring == "replace" and TrainConfig(arch="resnet10_w16", datasets=("cifar10",)).wiring == "replace"
    assert TrainConfig(arch="lm_tiny", datasets=("pydoc",)).wiring == "add"  # the authors' LLaMA wiring
    assert make_cfg(wiring="add").wiring == "add" and TrainConfig().shortcut_decay == "none"
    assert make_cfg(weight_decay=0.1).shortcut_decay == "same"  # the surface optimizer decays every parameter, as ever
    assert TrainConfig(arch="resnet10_w16", datasets=("cifar10",), weight_decay=0.1).shortcut_decay == "none"
    with pytest.raises(ValueError, match=r"wiring: unknown 'both' \(valid: auto, replace, add\)"):
        make_cfg(wiring="both")
    with pytest.raises(ValueError, match=r"wiring: unknown 'x' \(valid: replace, add\)"):
        make_topology("ancre", wiring="x")
    with pytest.raises(ValueError, match="shortcut_decay: the surface optimizer decays every parameter alike"):
        make_cfg(weight_decay=0.1, shortcut_decay="none")
    with pytest.raises(ValueError, match=r"shortcut_decay: unknown 'yes' \(valid: auto, none, same\)"):
        make_cfg(shortcut_decay="yes")


@pytest.mark.parametrize("name,src", [("cascade_pattern", lambda j: j - 1), ("all_from_input", lambda j: 0),
                                      ("mixed", lambda j: [0, 0, 1, 0, 3][j - 1])])
@pytest.mark.parametrize("normalisation", ["ingoing", "none"])
def test_add_with_one_hot_coefficients_is_cascade_plus_one_shortcut(name, src, normalisation):
    """Under add and p_ij = [i = s_j] the model is the cascade model with one extra shortcut s_j -> j per block:
    x_j = x_{j-1} + F_j(x_{j-1}) + x_{s_j}; with s_j = j-1, x_j = 2 x_{j-1} + F_j(x_{j-1}): not the cascade model."""
    m, ref = model("ancre", normalisation, wiring="add"), model("cascade")
    if normalisation == "none":
        with torch.no_grad():
            for j, b in enumerate(m.blocks, 1):
                b.shortcut.zero_()
                b.shortcut[:, src(j)] = 1.0
    else:
        set_logits(m, src)
    x = torch.rand(2, 2, 33) * 2 - 1
    with torch.no_grad():
        want = add_by_hand(m, x, lambda j: [float(i == src(j)) for i in range(j)])
        assert all(torch.equal(a, b) for a, b in zip(m.features(x), want))
        assert not torch.allclose(m(x), ref(x))


def test_add_variants_take_the_authors_form():
    """ancre none starts at c = 0 (the cascade model); gains: no gain into block 1, x_j = x_{j-1} + F_j + g_j x_{j-1}
    (g_j = 1 at the start, i.e. 2 x_{j-1} + F_j); all_fixed: the constant mix 1/j added on top."""
    x = torch.rand(2, 2, 33) * 2 - 1
    ref = model("cascade")
    with torch.no_grad():
        m = model("ancre", "none", wiring="add")
        assert all(torch.equal(a, b) for a, b in zip(m.features(x), ref.features(x)))
        assert all((b.shortcut == 0).all() for b in m.blocks)
        g = model("gains", wiring="add")
        assert not hasattr(g.blocks[0], "shortcut") and [tuple(b.shortcut.shape) for b in g.blocks[1:]] == [(2, 1, 1)] * (L - 1)
        want = add_by_hand(g, x, lambda j: [0.0] * (j - 1) + [float(j > 1)])
        assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-6) for a, b in zip(g.features(x), want))
        for j, b in enumerate(g.blocks[1:], 2):
            b.shortcut.fill_(0.5 * j)
        want = add_by_hand(g, x, lambda j: [0.0] * (j - 1) + [0.5 * j * (j > 1)])
        assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-6) for a, b in zip(g.features(x), want))
        assert [p for _, j, i, p in coefficients(g) if i == j - 1][:L] == [0.0] + [0.5 * j for j in range(2, L + 1)]
        f = model("all_fixed", wiring="add")
        assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-6)
                   for a, b in zip(f.features(x), add_by_hand(f, x, lambda j: [1 / j] * j)))


def test_add_differs_from_replace_at_initialisation():
    """Uniform start: the coefficient on x_{j-1} is 1 + 1/j under add, 1/j under replace (the issue's 1.7 vs 38)."""
    x = torch.rand(2, 2, 33) * 2 - 1
    with torch.no_grad():
        a, r = model("ancre", wiring="add"), model("ancre")
        assert all(torch.allclose(u, v, rtol=1e-6, atol=1e-6)
                   for u, v in zip(a.features(x), add_by_hand(a, x, lambda j: [1 / j] * j)))
        assert not torch.allclose(a(x), r(x))


# --- the inactive-block guarantee -----------------------------------------------------------------------------------

def snapshot(ctx):
    """{block j: [values, m, v, b1t, b2t]} over all of block j's parameters (branch and coefficients), cloned."""
    snap = {}
    for j, b in enumerate(ctx.model.blocks, 1):
        ps = list(b.parameters())
        vals = torch.cat([p.detach().reshape(ctx.n_runs, -1) for p in ps], dim=1).clone()
        state = [torch.cat([getattr(ctx.opt, k)[:, slice(*ctx.opt.slices[p])] for p in ps], dim=1).clone()
                 for k in ("m", "v", "b1t", "b2t")]
        snap[j] = [vals, *state, b.shortcut.detach().clone()]
    return snap


@pytest.mark.parametrize("wiring", ["replace", "add"])
@pytest.mark.parametrize("normalisation", ["ingoing", "outgoing", "none"])
@pytest.mark.parametrize("decoupled", [True, False])
def test_lpa_prefix_steps_leave_deeper_blocks_and_their_coefficients_bit_for_bit(normalisation, decoupled, wiring):
    ctx = Context(make_cfg(normalisation=normalisation, weight_decay=0.1, shortcut_decay="same", paradigm="lpa",
                           wiring=wiring))
    ctx.opt.decoupled = decoupled
    simultaneous(ctx, 0)  # warm: Adam moments and step counts non-zero everywhere, coefficients off their init
    assert (ctx.opt.b1t < 1).all()
    orig, seen = ctx.step, []

    def step(losses, params, runs=None):
        ids = {id(p) for p in params}
        d = max(j for j, b in enumerate(ctx.model.blocks, 1) if id(b.shortcut) in ids)
        before = snapshot(ctx)
        orig(losses, params, runs)
        after = snapshot(ctx)
        for j in range(1, L + 1):
            same = all(torch.equal(a, b) for a, b in zip(before[j], after[j]))
            assert same == (j > d), f"block {j}: changed={not same} after a step at depth {d}"
            if j <= d and (j > 1 or normalisation != "ingoing"):  # block 1's ingoing logit has zero gradient
                assert not torch.equal(before[j][-1], after[j][-1]), f"coefficients of block {j} did not move"
        seen.append(d)
    ctx.step = step
    PARADIGMS["lpa"](ctx, 0)
    assert seen == list(range(1, L + 1)) * NB + [L] * NB


# --- training writes coeffs.csv -------------------------------------------------------------------------------------

@pytest.mark.parametrize("topology,normalisation", VARIANTS)
def test_training_writes_coeffs_csv(tmp_path, topology, normalisation):
    cfg = make_cfg(topology=topology, normalisation=normalisation, seeds=(0, 1), paradigm="lpa", depth=4)
    status = train(cfg, tmp_path / "out", tmp_path / "ck", log=QUIET)
    c = pd.read_csv(tmp_path / "out/coeffs.csv")
    assert list(c.columns) == ["exp", "dataset", "arch", "paradigm", "seed", "topology", "j", "i", "p"]
    assert len(c) == 2 * 4 * 5 // 2 and (c.topology == topology).all() and (c.i < c.j).all()
    ok = c[c.seed.isin([seed for seed, st in zip((0, 1), status) if st == "ok"])]
    if topology == "cascade":
        assert (ok.p == (ok.i == ok.j - 1)).all()
    elif topology == "all_fixed":
        assert (ok.p - 1 / ok.j).abs().max() < 1e-7
    elif topology == "gains":
        assert (ok[ok.i < ok.j - 1].p == 0).all() and (ok[ok.i == ok.j - 1].p != 1).all()  # learnt, moved off 1
    elif normalisation == "ingoing":
        assert ok.groupby(["seed", "j"]).p.sum().sub(1).abs().max() < 1e-5
    elif normalisation == "outgoing":
        assert ok.groupby(["seed", "i"]).p.sum().sub(1).abs().max() < 1e-5
    if topology == "ancre" and normalisation != "none":
        assert status == ["ok", "ok"]
        assert ok.groupby(["seed", "j"]).p.nunique().max() > 1  # learnt: no longer uniform


def test_params_per_run_counts_the_coefficients(tmp_path):
    for topology, extra in (("cascade", 0), ("ancre", 4 * 5 // 2), ("gains", 4)):
        out = tmp_path / topology
        train(make_cfg(topology=topology, depth=4, epochs=1), out, tmp_path / f"ck_{topology}", log=QUIET)
        s = pd.read_csv(out / "summary.csv")
        assert s.params_per_run.tolist() == [2 * 6 + 6 + 4 * (2 * (6 * 6 + 6)) + 6 + 1 + extra]


def test_unnormalised_ancre_that_blows_up_is_recorded_diverged(tmp_path):
    cfg = make_cfg(normalisation="none", seeds=(0, 1), lr=1e6, paradigm="lpa", depth=4)
    status = train(cfg, tmp_path / "out", tmp_path / "ck", log=QUIET)
    assert status == ["diverged", "diverged"]
    assert pd.read_csv(tmp_path / "out/summary.csv").status.tolist() == ["diverged"] * 2
    assert pd.read_csv(tmp_path / "out/coeffs.csv").p.isna().all()


# --- Fig 6 ----------------------------------------------------------------------------------------------------------

def test_heatmap_from_coeffs_csv_through_its_subcommand(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    rows = []
    for topo, dataset in (("ancre", "saddle"), ("cascade", "saddle"), ("ancre", "high_freq")):
        m = model("ancre" if topo == "ancre" else "cascade", seeds=(0, 1))
        if topo == "ancre":
            with torch.no_grad():
                for b in m.blocks:
                    b.shortcut.normal_(0, 0.3)
        rows += [["e", dataset, "resmlp", "lpa", r, topo, j, i, p if r == 0 or dataset == "saddle" else math.nan]
                 for r, j, i, p in coefficients(m)]
    for k, part in enumerate((rows[:60], rows[60:])):
        d = tmp_path / f"run{k}"
        d.mkdir()
        pd.DataFrame(part, columns=["exp", "dataset", "arch", "paradigm", "seed", "topology", "j", "i", "p"]) \
            .to_csv(d / "coeffs.csv", index=False)
        finish_run(d, {"config": {"exp": "e"}}, "surfaces", "test", "e")  # a finished run: the report's loader checks it
    p = argparse.ArgumentParser()
    add_commands(p.add_subparsers(dest="cmd"))
    args = p.parse_args(["coeff-heatmap", "--runs", str(tmp_path / "run0"), str(tmp_path / "run1"),
                         "--out", str(tmp_path / "fig6.png")])
    args.func(args)
    png = (tmp_path / "fig6.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with pytest.raises(RunError, match="nowhere/run.json: missing"):
        heatmap([tmp_path / "nowhere"], tmp_path / "x.png")


def test_topology_registry_matches_the_schema():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    schema = yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["$defs"]["train"]["properties"]
    assert props["topology"]["x-registry"] == "topology"  # its names: lpa_core.registry.TOPOLOGIES
    assert props["normalisation"]["enum"] == ["ingoing", "outgoing", "none"]
    assert props["tau"]["exclusiveMinimum"] == 0


# --- the vision stacks: library blocks under a topology (lpa_core.models.BlockStack) ---------------------------------

VISION = ["resnet10_w16", "vit6_d64"]  # the smallest of each family: 4 and 6 blocks


def vmodel(arch, topology="ancre", normalisation="ingoing", img_size=32, wiring="replace"):
    torch.manual_seed(0)  # same library weights whatever the topology (coefficients attach after, init without RNG)
    return create_model(arch, d_in=(3, img_size, img_size), d_out=10, topology=topology, normalisation=normalisation,
                        wiring=wiring).eval()


def randomise(m):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for b in m.blocks:
            b.shortcut.copy_(torch.randn(b.shortcut.shape, generator=g) * 0.3)


def vision_by_hand(m, x, coeff):
    """x_j = block_j(x_{j-1}) - P_j(x_{j-1}) + sum_i coeff(j)[i] P_j(x_i), written out with the library blocks."""
    xs = [m.stem(x)]
    for j, b in enumerate(m.blocks, 1):
        h = xs[-1]
        P = lambda z: m.project(z, j, h)  # noqa: E731
        xs.append(b(h) - P(h) + sum(p * P(z) for p, z in zip(coeff(j), xs)))
    return xs[1:]


@pytest.mark.parametrize("arch", VISION)
@pytest.mark.parametrize("normalisation", ["ingoing", "outgoing"])
def test_vision_coefficients_sum_to_one(arch, normalisation):
    m = vmodel(arch, normalisation=normalisation)
    randomise(m)
    c = pd.DataFrame(coefficients(m), columns=["run", "j", "i", "p"])
    assert len(c) == m.depth * (m.depth + 1) // 2 and (c.p >= 0).all()
    assert c.groupby("j" if normalisation == "ingoing" else "i").p.sum().sub(1).abs().max() < 1e-6
    assert c[c.j > 1].groupby("j").p.nunique().min() > 1  # not uniform: the sums are not trivially 1


@pytest.mark.parametrize("arch", VISION)
@pytest.mark.parametrize("normalisation", ["ingoing", "outgoing"])
def test_vision_one_hot_ancre_is_the_library_model_bit_for_bit(arch, normalisation):
    """p_{j-1,j} = 1 (every other p = 0) is cascade, i.e. the library blocks as written, at every depth."""
    cascade, ancre = vmodel(arch, "cascade"), vmodel(arch, "ancre", normalisation)
    assert all(torch.equal(a, b) for a, b in zip(cascade.state_dict().values(),
                                                 [v for k, v in ancre.state_dict().items() if not k.endswith("shortcut")]))
    set_logits(ancre, lambda j: j - 1)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(ancre.features(x), cascade.features(x)))
        assert torch.equal(ancre(x), cascade(x))


@pytest.mark.parametrize("arch", VISION)
@pytest.mark.parametrize("name,coeff", [
    ("skip_two", lambda j: [float(i == max(0, j - 2)) for i in range(j)]),  # one 0:2-style shortcut i = j-2 -> j
    ("all_from_input", lambda j: [float(i == 0) for i in range(j)]),
    ("all_fixed", lambda j: [1 / j] * j)])
def test_vision_fixed_patterns_match_a_hand_computation(arch, name, coeff):
    if name == "all_fixed":
        m = vmodel(arch, "all_fixed")
    else:
        m = vmodel(arch, "ancre")
        set_logits(m, lambda j: coeff(j).index(1.0))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(m.features(x), vision_by_hand(m, x, coeff)):
            assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def vision_add_by_hand(m, x, coeff, drop=()):
    """x_j = block_j(x_{j-1}) + sum_i coeff(j)[i] P_j(x_i) (a block in `drop`: P_j(x_{j-1}) + the mix)."""
    xs = [m.stem(x)]
    for j, b in enumerate(m.blocks, 1):
        h = xs[-1]
        P = lambda z: m.project(z, j, h)  # noqa: E731
        xs.append((P(h) if j in drop else b(h)) + sum(p * P(z) for p, z in zip(coeff(j), xs)))
    return xs[1:]


@pytest.mark.parametrize("arch", VISION)
@pytest.mark.parametrize("name,src", [("cascade_pattern", lambda j: j - 1), ("all_from_input", lambda j: 0)])
def test_vision_add_with_one_hot_coefficients_is_the_library_model_plus_one_shortcut(arch, name, src):
    """Under add the library block runs untouched (its own shortcut, ResNet's projection shortcut included) and
    P_j(x_{s_j}) is added after it; a block dropped whole leaves P_j(x_{j-1}) + the mix."""
    m = vmodel(arch, "ancre", wiring="add")
    set_logits(m, src)
    coeff = lambda j: [float(i == src(j)) for i in range(j)]  # noqa: E731
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(m.features(x), vision_add_by_hand(m, x, coeff)):
            assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-5)
        with m.dropping([True, False] + [True] * (m.depth - 2)):
            got = m.features(x)
        for a, b in zip(got, vision_add_by_hand(m, x, coeff, drop=(2,))):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", VISION)
@pytest.mark.parametrize("wiring", ["replace", "add"])
def test_vision_mix_gradients_match_plain_autograd(arch, wiring):
    """The fused mix's own backward (lpa_core.topology.mix_states) against autograd through the hand computation
    of either wiring, in float64, for the coefficients and every weight."""
    m = vmodel(arch, "ancre", wiring=wiring).double()
    randomise(m)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    ours = torch.autograd.grad(m.head(m.features(x)[-1]).square().sum(), list(m.parameters()))
    w = [p[0] for p in m.topology.weights(m.blocks, None)]
    by_hand_ = vision_add_by_hand if wiring == "add" else vision_by_hand
    ref = torch.autograd.grad(m.head(by_hand_(m, x, lambda j: w[j - 1])[-1]).square().sum(), list(m.parameters()))
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(ours, ref))


@pytest.fixture
def tiny_images(monkeypatch):
    """Every vision task loads 8 x 8 RGB images of 3 classes (24 train, 12 test), whatever the dataset."""
    from lpa_core import vision
    from lpa_core.images import Spec, TensorImages

    def load(name, cfg):
        g = torch.Generator().manual_seed(0)
        split = {k: (torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8), torch.randint(0, 3, (n,), generator=g))
                 for k, n in (("train", 24), ("test", 12))}
        return TensorImages("tiny", Spec(3, 3, 8, (0.5,) * 3, (0.25,) * 3), split, cfg.device)

    vision._DATA.clear()
    monkeypatch.setattr(vision, "load_images", load)
    yield
    vision._DATA.clear()


def vcfg(arch, **kw):
    base = dict(arch=arch, datasets=("cifar10",), seeds=(0,), epochs=2, batch_size=8, lr=0.05 if "resnet" in arch else 1e-3,
                weight_decay=5e-4 if "resnet" in arch else 0.05, eval_every=1, n_embed=0, ckpt_every_s=1e9,
                topology="ancre")
    base.update(kw)
    return TrainConfig(**base)


def vision_snapshot(task):
    """{block j: (weights, then the coefficients last; optimizer state; BatchNorm buffers)}, cloned."""
    out = {}
    for j, b in enumerate(task.model.blocks, 1):
        ps = [p for n, p in b.named_parameters() if n != "shortcut"] + [b.shortcut]
        state = [v.clone() for p in ps for _, v in sorted(task.opt.state.get(p, {}).items())]
        out[j] = ([p.detach().clone() for p in ps], state, [x.clone() for x in b.buffers()])
    return out


@pytest.mark.parametrize("arch", VISION)
@pytest.mark.parametrize("normalisation,wiring", [("ingoing", "replace"), ("outgoing", "replace"), ("ingoing", "add"),
                                                  ("outgoing", "add")])
def test_vision_ancre_under_lpa_leaves_deeper_blocks_and_their_coefficients_bit_for_bit(tiny_images, arch, normalisation,
                                                                                       wiring):
    """After a warm epoch (momentum / Adam moments everywhere): a step at depth d moves blocks <= d (coefficients
    included) and leaves blocks > d, their coefficients, optimizer state and BatchNorm statistics bit for bit, with
    grads None. SGD Nesterov + weight decay (ResNet), AdamW + weight decay (ViT)."""
    from lpa_core.vision import VisionTask

    task = VisionTask(vcfg(arch, paradigm="lpa", normalisation=normalisation, wiring=wiring))
    L = task.model.depth
    simultaneous(task, 0)
    assert all(p in task.opt.state for p in task.model.parameters())
    orig, seen = task.step, []

    def step(losses, params, runs=None):
        ids = {id(p) for p in params}
        d = max(j for j, b in enumerate(task.model.blocks, 1) if id(b.shortcut) in ids)
        before = vision_snapshot(task)
        orig(losses, params, runs)
        after = vision_snapshot(task)
        for j in range(1, L + 1):
            (w0, s0, b0), (w1, s1, b1) = before[j], after[j]
            same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a, b))  # noqa: E731
            if j > d:
                assert same(w0, w1) and same(s0, s1) and same(b0, b1), f"block {j} changed in a step at depth {d}"
                assert all(p.grad is None for p in task.model.blocks[j - 1].parameters())
            else:
                assert not same(w0[:-1], w1[:-1]), f"block {j} did not step at depth {d}"
                if j > 1 or normalisation != "ingoing":  # block 1's ingoing logit has zero gradient
                    assert not torch.equal(w0[-1], w1[-1]), f"coefficients of block {j} did not move"
        seen.append(d)

    task.step = step
    PARADIGMS["lpa"](task, 1)
    assert seen == list(range(1, L + 1)) * 3 + [L] * 3


@pytest.mark.parametrize("arch", VISION)
def test_tiny_vision_run_with_ancre_writes_coeffs_csv(tiny_images, tmp_path, arch):
    status = train(vcfg(arch, exp="ancre_ancre", tau=0.1), tmp_path / "out", tmp_path / "ck", log=QUIET)
    assert status == ["ok"]
    c = pd.read_csv(tmp_path / "out/coeffs.csv")
    L = {"resnet10_w16": 4, "vit6_d64": 6}[arch]
    assert list(c.columns) == ["exp", "dataset", "arch", "paradigm", "seed", "topology", "j", "i", "p"]
    assert len(c) == L * (L + 1) // 2 and (c.arch == arch).all() and (c.topology == "ancre").all()
    assert (c.dataset == "cifar10").all() and (c.seed == 0).all() and (c.exp == "ancre_ancre").all()
    assert c.groupby("j").p.sum().sub(1).abs().max() < 1e-5
    assert c[c.j > 1].groupby("j").p.nunique().max() > 1  # learnt: moved off uniform
    cfg = json.loads((tmp_path / "out/run.json").read_text())["config"]
    assert (cfg["topology"], cfg["normalisation"], cfg["tau"]) == ("ancre", "ingoing", 0.1)
