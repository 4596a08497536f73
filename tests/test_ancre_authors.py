"""Held-out check of wiring `add` against the ANCRé authors' forward pass (zhangyilang/ANCRe, ancre/ancre.py as called
per decoder layer by llm/pretraining/modeling_llama.py), transcribed below from its description, not imported:

  before layer 1:  states = [x_0]
  after layer j:   h = layer_j(x_{j-1})  (the layer's own residual inside), then
     ingoing   (AdaptiveNeuralConnectionReassign)  x_j = h + sum_{i<j} softmax(c_j / T)[i] x_i, c_j of size j
     outgoing  (ANCReOutgoingNorm)                 x_j = h + sum_{i<j} softmax(d_i / T)[j-1-i] x_i, d_i of size L-i
     gains     (NaiveLearnableResidualConnections)  x_1 = h; x_j = h + g_j x_{j-1} for j >= 2, g init 1
     constant  (parameterisation 'constant')        ingoing with frozen zero logits: p_ij = 1/j
  and the layer's output x_j joins the states. Their first ingoing logit (and last outgoing one) is frozen.

Our stacks under wiring add must equal it to float64 rounding, outputs and gradients (logits, blocks, stem, head),
for both normalisations and two temperatures, on the residual MLP and on a Llama decoder stack."""
import pytest
import torch

from lpa_core.registry import create_model

T = (0.1, 0.01)


def authors_forward(stem, layers, head, x, coeffs):
    """The authors' loop; coeffs(idx, states) -> list of (coefficient, state) added after layer idx (0-based)."""
    states = [stem(x)]
    h = states[0]
    for idx, layer in enumerate(layers):
        h = layer(h)
        for c, s in coeffs(idx, states):
            h = h + c * s
        states.append(h)
    return head(h)


def ingoing(params, tau):
    return lambda idx, states: zip(torch.softmax(params[idx] / tau, 0), states)


def outgoing(params, tau):
    return lambda idx, states: [(torch.softmax(params[i] / tau, 0)[idx - i], states[i]) for i in range(idx + 1)]


def randomise(blocks, tau, gen):
    with torch.no_grad():
        for b in blocks:
            b.shortcut.copy_(tau * 2 * torch.randn(b.shortcut.shape, generator=gen, dtype=b.shortcut.dtype))


def compare(ours_model, ref_out_fn, x, theirs_params, to_ours):
    """Outputs and gradients: ours (loss through the model) vs the transcription (loss through ref_out_fn); the
    authors' logits are separate leaves, their gradients mapped onto ours' shapes by to_ours."""
    weights = [p for n, p in ours_model.named_parameters() if not n.endswith("shortcut")]
    logits = [b.shortcut for b in ours_model.blocks if hasattr(b, "shortcut")]
    out = ours_model(x)
    ref = ref_out_fn()
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12), (out - ref).abs().max()
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    g_ours = torch.autograd.grad((out * probe).sum(), weights + logits)
    free = [p for p in theirs_params if p.requires_grad]  # their frozen logit gets no gradient: 0 here
    g_ref = torch.autograd.grad((ref * probe).sum(), weights + free, allow_unused=True)
    n = len(weights)
    for a, b in zip(g_ours[:n], g_ref[:n]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    it = iter(g_ref[n:])
    mapped = to_ours([next(it) if p.requires_grad else torch.zeros_like(p) for p in theirs_params])
    for a, b in zip(g_ours[n:], mapped):
        assert torch.allclose(a.reshape(b.shape), b, rtol=1e-10, atol=1e-12)
    assert any(g.abs().max() > 0 for g in g_ours[n:])  # the coefficients do get a gradient


def mlp(topology, normalisation="ingoing", tau=0.1, depth=5):
    return create_model("resmlp", seeds=[0], d_in=2, d_out=1, width=6, depth=depth, topology=topology, normalisation=normalisation, tau=tau,
                        wiring="add").double()  # the wiring under test


def mlp_parts(m):
    """The MLP as the authors' loop sees it: a layer is x -> x + F(x), with its own residual."""
    return m.stem, [lambda h, b=b: h + b(h) for b in m.blocks], m.head


@pytest.mark.parametrize("tau", T)
def test_ingoing_equals_the_authors_forward(tau):
    m = mlp("ancre", "ingoing", tau)
    randomise(m.blocks, tau, torch.Generator().manual_seed(1))
    x = torch.rand(1, 2, 17, dtype=torch.float64) * 2 - 1
    theirs = [b.shortcut.detach()[0].clone().requires_grad_(j > 1) for j, b in enumerate(m.blocks, 1)]  # first frozen
    stem, layers, head = mlp_parts(m)
    compare(m, lambda: authors_forward(stem, layers, head, x, ingoing(theirs, tau)), x, theirs,
            lambda g: [t.unsqueeze(0) for t in g])


@pytest.mark.parametrize("tau", T)
def test_outgoing_equals_the_authors_forward(tau):
    m = mlp("ancre", "outgoing", tau)
    L = m.depth
    randomise(m.blocks, tau, torch.Generator().manual_seed(2))
    x = torch.rand(1, 2, 17, dtype=torch.float64) * 2 - 1
    # their d_i[k] is the logit of i -> j = i + 1 + k; ours: block j's shortcut[0, i]
    theirs = [torch.stack([m.blocks[j - 1].shortcut.detach()[0, i] for j in range(i + 1, L + 1)]).requires_grad_(i < L - 1)
              for i in range(L)]
    stem, layers, head = mlp_parts(m)

    def to_ours(g):
        return [torch.stack([g[i][j - 1 - i] for i in range(j)]).unsqueeze(0) for j in range(1, L + 1)]

    compare(m, lambda: authors_forward(stem, layers, head, x, outgoing(theirs, tau)), x, theirs, to_ours)


def test_gains_and_constant_equal_the_authors_forms():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, 2, 17, dtype=torch.float64) * 2 - 1
    m = mlp("gains")
    with torch.no_grad():
        for b in m.blocks[1:]:
            b.shortcut.copy_(1 + 0.3 * torch.randn(b.shortcut.shape, generator=gen, dtype=torch.float64))
    g = torch.cat([torch.ones(1, dtype=torch.float64)] + [b.shortcut.detach().reshape(1) for b in m.blocks[1:]])
    g.requires_grad_(True)  # g[0] is unused by their forward, as it has no block-1 gain
    stem, layers, head = mlp_parts(m)
    naive = lambda idx, states: [(g[idx], states[-1])] if idx > 0 else []  # noqa: E731
    compare(m, lambda: authors_forward(stem, layers, head, x, naive), x, [g],
            lambda gr: [gr[0][j].reshape(1, 1, 1) for j in range(1, m.depth)])
    c = mlp("all_fixed")
    zeros = [torch.zeros(j, dtype=torch.float64) for j in range(1, c.depth + 1)]  # 'constant': frozen zero logits
    stem, layers, head = mlp_parts(c)
    with torch.no_grad():
        assert torch.allclose(c(x), authors_forward(stem, layers, head, x, ingoing(zeros, 0.1)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("normalisation", ["ingoing", "outgoing"])
@pytest.mark.parametrize("tau", T)
def test_decoder_stack_equals_the_authors_llama_placement(normalisation, tau):
    """The block-level mix after each Llama decoder layer (lpa_core.lm, BlockStack.step under add)."""
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    m = create_model("lm_tiny", d_in=97, d_out=97, topology="ancre", tau=tau, normalisation=normalisation).double().eval()
    assert m.topology.wiring == "add"  # the LM default follows the authors
    L = m.depth
    randomise(m.blocks, tau, torch.Generator().manual_seed(4))
    x = torch.randint(0, 97, (2, 9))
    if normalisation == "ingoing":
        theirs = [b.shortcut.detach()[0].clone().requires_grad_(j > 1) for j, b in enumerate(m.blocks, 1)]
        coeffs, to_ours = ingoing(theirs, tau), (lambda g: [t.unsqueeze(0) for t in g])
    else:
        theirs = [torch.stack([m.blocks[j - 1].shortcut.detach()[0, i] for j in range(i + 1, L + 1)]).requires_grad_(i < L - 1)
                  for i in range(L)]
        coeffs = outgoing(theirs, tau)
        to_ours = lambda g: [torch.stack([g[i][j - 1 - i] for i in range(j)]).unsqueeze(0) for j in range(1, L + 1)]  # noqa: E731
    compare(m, lambda: authors_forward(m.stem, list(m.blocks), m.head, x, coeffs), x, theirs, to_ours)


def test_shortcut_decay_puts_the_logits_in_the_decayed_group():
    from lpa_core.vision import make_optimizer

    m = create_model("vit6_d64", d_in=(3, 32, 32), d_out=10, topology="ancre")
    logits = {id(b.shortcut) for b in m.blocks}
    for decay, want in ((False, 0.0), (True, 0.05)):
        opt = make_optimizer(m, "vit6_d64", 1e-3, 0.05, shortcut_decay=decay)
        got = {g["weight_decay"] for g in opt.param_groups for p in g["params"] if id(p) in logits}
        assert got == {want}
    pytest.importorskip("transformers")
    from lpa_core.lm import make_optimizer as lm_optimizer

    lmm = create_model("lm_tiny", d_in=97, d_out=97, topology="ancre")
    logits = {id(b.shortcut) for b in lmm.blocks}
    for decay, want in ((False, 0.0), (True, 0.1)):
        opt = lm_optimizer(lmm, 1e-3, 0.1, shortcut_decay=decay)
        assert {g["weight_decay"] for g in opt.param_groups for p in g["params"] if id(p) in logits} == {want}
