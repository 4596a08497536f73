"""The residual-stack interface and its models.

Every model is a stem G0, residual blocks G1..GL and one *shared* head Wo. `forward(x, depth=k)` predicts with
the stem, the first k blocks and the head; `features(x, depth)` hands back the per-depth representations
x_1..x_k; `params(depth, first)` lists what a step at that depth may update (stem, blocks first+1..depth, head).
Blocks are residual *branches* F_j; the stack owns the shortcuts, x_j = F_j(x_{j-1}) + S_j(x_0..x_{j-1}), with S_j
the shortcut mix of the model's topology (lpa_core.topology; the default, cascade, is S_j = x_{j-1}). A block owns
the coefficients of the shortcuts into it (`block.shortcut`), so `params` carries them with the block.

Models carry a leading *run* axis of size `n_runs`: runs that share a schedule (seeds, surfaces) train as one
vectorised model with batched weights, each run with its own init, data and optimizer state.
"""
import math

import torch
from torch import nn

from lpa_core.topology import make_topology


class ResidualStack(nn.Module):
    """stem -> blocks[:depth] -> head; subclasses set stem, blocks (ModuleList of branches), head, n_runs, then
    call `connect` to choose the topology (it may attach coefficients to the blocks)."""

    def connect(self, topology="cascade", tau=0.1, normalisation="ingoing"):
        self.topology = make_topology(topology, tau=tau, normalisation=normalisation)
        self.topology.attach(self.blocks, self.n_runs)

    def states(self, x, depth=None):
        """[x_0, x_1, ..., x_depth]: the stem output, then x_j = F_j(x_{j-1}) + S_j(x_0..x_{j-1})."""
        xs = [self.stem(x)]
        for block, w in zip(self.blocks[:depth], self.topology.weights(self.blocks, depth)):
            xs.append(self.topology.join(block(xs[-1]), xs, w))
        return xs

    def features(self, x, depth=None):
        return self.states(x, depth)[1:]

    def forward(self, x, depth=None):
        return self.head(self.states(x, depth)[-1])

    def params(self, depth=None, first=0):
        mods = [self.stem, *self.blocks[first:depth], self.head]
        return [p for m in mods for p in m.parameters()]

    @property
    def depth(self):
        return len(self.blocks)


class RunLinear(nn.Module):
    """A linear layer per run on feature-major activations: x [R, i, B] -> W x + b [R, o, B], PyTorch's default
    init drawn per run. Feature-major makes the batch the wide gemm dimension: 3-4x faster than [R, B, i] @ W
    for width 10 on a CPU core."""

    def __init__(self, n_runs, d_in, d_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_runs, d_out, d_in))
        self.bias = nn.Parameter(torch.empty(n_runs, d_out, 1))

    def reset(self, gens):
        bound = 1 / math.sqrt(self.weight.shape[2])
        with torch.no_grad():
            for r, g in enumerate(gens):
                self.weight[r].uniform_(-bound, bound, generator=g)
                self.bias[r].uniform_(-bound, bound, generator=g)

    def forward(self, x):
        return torch.baddbmm(self.bias, self.weight, x)


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class MLPBlock(nn.Module):
    """The residual branch F(x) = W' act(W x + b) + b' of the paper's Eq. 3 (the stack adds the shortcut)."""

    def __init__(self, n_runs, width, activation):
        super().__init__()
        self.fc1, self.act, self.fc2 = RunLinear(n_runs, width, width), ACTIVATIONS[activation](), RunLinear(n_runs, width, width)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ResMLP(ResidualStack):
    """The paper's residual MLP (Sec 5.1): linear stem d_in->width, `depth` blocks of width `width`, linear head.
    Inputs [R, d_in, B], outputs [R, d_out, B]. `topology`, `tau`, `normalisation`: see lpa_core.topology."""

    def __init__(self, seeds, d_in=2, d_out=1, width=10, depth=6, activation="relu", topology="cascade", tau=0.1,
                 normalisation="ingoing"):
        super().__init__()
        self.n_runs = len(seeds)
        self.stem = RunLinear(self.n_runs, d_in, width)
        self.blocks = nn.ModuleList(MLPBlock(self.n_runs, width, activation) for _ in range(depth))
        self.head = RunLinear(self.n_runs, width, d_out)
        gens = [torch.Generator().manual_seed(1_000_003 + s) for s in seeds]  # init stream, separate from data
        for m in self.modules():
            if isinstance(m, RunLinear):
                m.reset(gens)
        self.connect(topology, tau=tau, normalisation=normalisation)


ARCHS = {"resmlp": ResMLP}


def create_model(arch, seeds, **kwargs):
    if arch not in ARCHS:
        raise ValueError(f"arch: unknown '{arch}' (valid: {', '.join(ARCHS)})")
    return ARCHS[arch](seeds, **kwargs)
