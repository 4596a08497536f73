"""Residual topologies: which shortcuts feed each block, and with which coefficients.

A residual stack (lpa_core.models.ResidualStack) owns its shortcuts: x_0 = stem(x) and, for j = 1..L,

    x_j = F_j(x_{j-1}) + S_j,    S_j = sum_{i<j} p_ij x_i

where F_j is block j's residual branch and the topology (TrainConfig.topology) fixes the coefficients p_ij:

  cascade    p_ij = [i = j-1]: standard residuals, nothing learnable (the default; today's numbers bit for bit)
  ancre      every shortcut i->j (0 <= i < j <= L) has a learnable logit c_ij (ANCRe, Sec 4.1); by normalisation
               ingoing  (default, Eq. 7-8)  p_ij = softmax over i = 0..j-1 of c_ij / tau  (sum_i p_ij = 1)
               outgoing (Eq. 6)             p_ij = softmax over j = i+1..L of c_ij / tau  (sum_j p_ij = 1)
               none     (Table 4 'None')    p_ij = c_ij, unnormalised (tau unused)
  all_fixed  p_ij = 1/j for every i < j, nothing learnable (Table 5, 'all i:j, not learnable')
  gains      p_ij = g_j [i = j-1], a learnable scalar gain per block, init 1 (Table 5, 'learnable cascade')

Ownership: block j owns the coefficients of the shortcuts *into* j, as the parameter `block.shortcut` (ancre:
logits [R, j] over i = 0..j-1; gains: [R, 1, 1]; none for cascade/all_fixed). So `model.params(depth=d)` holds
exactly the coefficients of blocks <= d and a prefix step leaves the deeper blocks' coefficients and their Adam
state untouched, like the rest of those blocks. Under outgoing normalisation the softmax for source i runs over
every destination j' = i+1..L, so x_d depends on the logits of blocks > d too (x_d is the same at every evaluated
depth); in a step at depth d those logits are constants: they are not in `params`, so get no gradient, no update.

Initialisation: ancre logits all 0, identical across runs, so training starts from uniform coefficients (p_ij =
1/j ingoing, 1/(L-i) outgoing), as the authors' code does (zhangyilang/ANCRe, ancre/ancre.py and rl/ancre_jax.py:
nn.init.zeros_ / initializers.zeros on every logit; they freeze the one logit of block 1 (ingoing) or of source
L-1 (outgoing); here it stays a parameter, and under ingoing its gradient is identically 0, so it never moves).
normalisation=none starts as cascade: c_{j-1,j} = 1, every other c_ij = 0.

Wiring (TrainConfig.wiring): where the mix goes.
  replace  x_j = F_j(x_{j-1}) + S_j: the mix replaces the cascaded shortcut, as the paper's text has it (Sec 4.1: 'if
           some p_ij = 1, the construction reduces to adding a standard residual connection between layers i and
           j'; Sec 5.3: 'after removing the original cascaded residual connections'), so one-hot coefficients give
           back a fixed topology exactly. The default on the residual MLP and the vision stacks.
  add      x_j = x_{j-1} + F_j(x_{j-1}) + S_j: each block keeps its own residual and the mix is added after it, as
           the authors' code runs it (zhangyilang/ANCRe: ancre/ancre.py is called on each decoder layer's output in
           llm/pretraining/modeling_llama.py; the DiT and RL scripts likewise). With one-hot coefficients p_ij =
           [i = s_j] the model is the cascade model plus one extra shortcut per block, x_j = x_{j-1} + F_j(x_{j-1})
           + x_{s_j}; with s_j = j-1 the standard residual with its shortcut doubled, x_j = 2 x_{j-1} + F_j(x_{j-1})
           (tested). The default for language models (their LLaMA numbers were made so, with tau 0.01).
Under add the other variants take the authors' form: gains = their NaiveLearnableResidualConnections, x_1 = x_0 +
F_1(x_0) (no gain into block 1: block 1 owns no coefficient) and x_j = x_{j-1} + F_j(x_{j-1}) + g_j x_{j-1} for j >=
2, g_j = 1 at the start; all_fixed = their 'constant' parameterisation (frozen zero logits: p_ij = 1/j) added on
top; ancre none starts at c = 0, i.e. as the cascade model (under replace it starts at the one-hot cascade
coefficients). cascade has no mix: it is the standard residual under either wiring.
The authors' code defaults the temperature to 1e-2 (ANCReConfig, LLM and RL defaults; the README's DiT command
passes 1e-1); the paper's 0.1 is ours (cfg.tau), 0.01 in the LM configs. Remaining differences: docs/ancre-wiring.md.
"""
import math

import torch
from torch import nn

NORMALISATIONS = ("ingoing", "outgoing", "none")
WIRINGS = ("replace", "add")


def mix(f, xs, w):
    """f + sum_i w[:, i] * xs[i] for states xs[i] [R, ...] and weights w [R, j]: one batched gemm over the stack."""
    R, j = w.shape
    h = torch.stack(xs, 1).reshape(R, j, -1)
    return torch.baddbmm(f.reshape(R, 1, -1), w.unsqueeze(1).to(f.dtype), h).view_as(f)


class _MixStates(torch.autograd.Function):
    """base + sum_k c[k] * proj(xs[k]) (see mix_states). proj is linear, so the states of one shape are summed at
    their own shape and projected once (ResNet: one pooling per earlier stage, not one per state); backward maps
    the gradient back once per shape (proj_t) and keeps only c and references to the states: no stacked or
    projected copy."""

    @staticmethod
    def forward(ctx, base, c, proj, proj_t, *xs):
        out, groups = base.clone(), {}
        for k, x in enumerate(xs):
            groups.setdefault(x.shape, []).append(k)
        for shape, ks in groups.items():
            if shape == base.shape:  # proj is the identity here (the stack's projections keep a same-shape state)
                for k in ks:
                    out.addcmul_(xs[k], c[k].to(out.dtype))
                continue
            acc = xs[ks[0]] * c[ks[0]].to(xs[ks[0]].dtype)
            for k in ks[1:]:
                acc.addcmul_(xs[k], c[k].to(acc.dtype))
            out.add_(proj(acc))
        ctx.proj_t, ctx.groups = proj_t, groups
        ctx.save_for_backward(c, *xs)
        return out

    @staticmethod
    def backward(ctx, g):
        c, *xs = ctx.saved_tensors
        need_c, need_x = ctx.needs_input_grad[1], ctx.needs_input_grad[4:]
        gc, gx = [c.new_zeros(())] * len(xs), [None] * len(xs)
        for shape, ks in ctx.groups.items():
            gt = g if shape == g.shape else ctx.proj_t(g, shape)
            for k in ks:
                if need_c:
                    gc[k] = _dot(gt, xs[k]).to(c.dtype)
                if need_x[k]:
                    gx[k] = gt * c[k].to(gt.dtype)
        return g, torch.stack(gc) if need_c else None, None, None, *gx


def _dot(a, b):
    """sum(a * b) without a temporary where both are laid out alike and dense."""
    if a.stride() == b.stride() and (a.is_contiguous() or a.is_contiguous(memory_format=torch.channels_last)):
        perm = (0, 2, 3, 1) if not a.is_contiguous() else tuple(range(a.dim()))
        return torch.dot(a.permute(perm).reshape(-1), b.permute(perm).reshape(-1))
    return (a * b).sum()


def mix_states(base, c, xs, proj=None, proj_t=None):
    """base + sum_k c[k] * proj(xs[k]) for batch-first states xs (one run) and coefficients c [len(xs)]: the
    shortcut mix of a library block (lpa_core.models.BlockStack). A running sum of fused multiply-adds, not a
    stacked gemm: stacking j states per block would copy, and keep for backward, L(L+1)/2 states per forward
    (measured on a CPU core, batch 16: +35% saved activations on ViT-12, +52% on ResNet-18). proj: parameter-free
    and linear, the identity on a state of base's shape (identity everywhere when None); proj_t(g, shape): its
    transpose, back to a state of that shape."""
    return _MixStates.apply(base, c, proj, proj_t, *xs)


class Topology:
    """The interface the stack uses: attach coefficients to the blocks, `weights(blocks, depth)` once per forward
    (one entry per block 1..depth), `join(f, xs, w)` = x_j from the branch output f = F_j(x_{j-1}), the states
    xs = [x_0..x_{j-1}] and block j's weights (`mix`, then the block's own shortcut added under wiring add);
    `matrix(blocks)` = [p_j [R, j] for j = 1..L], the mix's coefficients, for reporting."""

    def __init__(self, tau=0.1, normalisation="ingoing", wiring="replace"):
        self.tau, self.normalisation, self.wiring = tau, normalisation, wiring

    @property
    def add(self):
        return self.wiring == "add"

    def join(self, f, xs, w):
        return self.mix(xs[-1] + f if self.add else f, xs, w)

    def attach(self, blocks, n_runs):
        pass

    def weights(self, blocks, depth):
        return [None] * len(range(len(blocks))[:depth])

    def matrix(self, blocks):
        raise NotImplementedError

    def block_weights(self, w, xs):
        """(p [n], states) with S_j = sum_k p[k] states[k], for a library block (one run, lpa_core.models.BlockStack)
        from block j's weights w and the states xs = [x_0..x_{j-1}]; None under cascade."""
        return w.reshape(-1), xs


def _cascaded(blocks, gain=None):
    """p_j [R or 1, j] with p_{j-1,j} = 1 (or block j's gain; 0 for a block without one) and 0 elsewhere."""
    out = []
    for j, b in enumerate(blocks, 1):
        g = torch.ones(1, 1) if gain is None else b.shortcut.detach().reshape(-1, 1).cpu() if hasattr(b, "shortcut") \
            else torch.zeros(1, 1)
        out.append(torch.cat([torch.zeros(g.shape[0], j - 1), g], 1))
    return out


class Cascade(Topology):
    def join(self, f, xs, w):  # the standard residual under either wiring
        return xs[-1] + f

    def block_weights(self, w, xs):
        return None

    def matrix(self, blocks):
        return _cascaded(blocks)


class Gains(Topology):
    """replace: x_j = F_j + g_j x_{j-1} for every j; add (the authors' form): no gain into block 1."""

    def attach(self, blocks, n_runs):
        for b in list(blocks)[1:] if self.add else blocks:
            b.shortcut = nn.Parameter(torch.ones(n_runs, 1, 1))

    def weights(self, blocks, depth):
        return [getattr(b, "shortcut", None) for b in list(blocks)[:depth]]

    def mix(self, f, xs, w):
        return f if w is None else torch.addcmul(f, w, xs[-1])

    def block_weights(self, w, xs):
        return None if w is None else (w.reshape(1), xs[-1:])

    def matrix(self, blocks):
        return _cascaded(blocks, gain=True)


class AllFixed(Topology):
    def mix(self, f, xs, w):
        return mix(f, xs, torch.full((f.shape[0], len(xs)), 1 / len(xs), dtype=f.dtype, device=f.device))

    def block_weights(self, w, xs):
        return torch.full((len(xs),), 1 / len(xs), device=xs[0].device), xs

    def matrix(self, blocks):
        return [torch.full((1, j), 1 / j) for j in range(1, len(blocks) + 1)]


class Ancre(Topology):
    def attach(self, blocks, n_runs):
        for j, b in enumerate(blocks, 1):
            c = torch.zeros(n_runs, j)
            if self.normalisation == "none" and not self.add:
                c[:, j - 1] = 1.0  # unnormalised coefficients start as cascade (under add: at c = 0)
            b.shortcut = nn.Parameter(c)

    def weights(self, blocks, depth):
        n = len(range(len(blocks))[:depth])
        if self.normalisation == "none":
            return [b.shortcut for b in list(blocks)[:n]]
        if self.normalisation == "ingoing":
            return [torch.softmax(b.shortcut / self.tau, dim=1) for b in list(blocks)[:n]]
        # outgoing: C[r, i, j-1] = c_ij / tau for i < j, -inf for i >= j; softmax over the destinations of each i
        L = len(blocks)
        cols = [torch.cat([b.shortcut / self.tau, b.shortcut.new_full((b.shortcut.shape[0], L - j), -math.inf)], 1)
                for j, b in enumerate(blocks, 1)]
        P = torch.softmax(torch.stack(cols, 2), dim=2)
        return [P[:, :j, j - 1] for j in range(1, n + 1)]

    def mix(self, f, xs, w):
        return mix(f, xs, w)

    def matrix(self, blocks):
        return self.weights(blocks, None)


TOPOLOGIES = {"cascade": Cascade, "ancre": Ancre, "all_fixed": AllFixed, "gains": Gains}


def make_topology(name="cascade", tau=0.1, normalisation="ingoing", wiring="replace"):
    from lpa_core.registry import TOPOLOGIES as REG

    REG.check(name)
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation: unknown '{normalisation}' (valid: {', '.join(NORMALISATIONS)})")
    if wiring not in WIRINGS:
        raise ValueError(f"wiring: unknown '{wiring}' (valid: {', '.join(WIRINGS)})")
    if not tau > 0:
        raise ValueError(f"tau: must be > 0, got {tau}")
    return REG[name](tau=tau, normalisation=normalisation, wiring=wiring)


@torch.no_grad()
def coefficients(model):
    """Tidy rows (run, j, i, p_ij) of a residual stack's shortcut coefficients, for 1 <= j <= L and every
    0 <= i < j (p = 0 where the topology has no shortcut i->j)."""
    rows = []
    ps = [p.detach().float().cpu().expand(model.n_runs, -1) for p in model.topology.matrix(model.blocks)]
    for r in range(model.n_runs):
        for j, p in enumerate(ps, 1):
            rows += [(r, j, i, float(p[r, i])) for i in range(j)]
    return rows
