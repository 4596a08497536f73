"""The residual-stack interface and its models.

Every model is a stem G0, residual blocks G1..GL and one *shared* head Wo. `forward(x, depth=k)` predicts with
the stem, the first k blocks and the head; `features(x, depth)` hands back the per-depth representations
x_1..x_k; `params(depth, first)` lists what a step at that depth may update (stem, blocks first+1..depth, head).
Blocks are residual *branches* F_j; the stack owns the shortcuts, x_j = F_j(x_{j-1}) + S_j(x_0..x_{j-1}), with S_j
the shortcut mix of the model's topology (lpa_core.topology; the default, cascade, is S_j = x_{j-1}; under wiring
`add` the block's own x_{j-1} is kept beside the mix, as in the ANCRé authors' code). A block owns
the coefficients of the shortcuts into it (`block.shortcut`), so `params` carries them with the block.

Models carry a leading *run* axis of size `n_runs`: runs that share a schedule (seeds, surfaces) train as one
vectorised model with batched weights, each run with its own init, data and optimizer state.

Layer dropout (the layerdrop and layerskip paradigms): inside `with model.dropping(keep):` block j's branch is
multiplied by keep[j-1], a bool per example ([B]; [R, B] per run on the run-stacked models), per run for the
whole batch ([R, 1]) or one bool for the whole batch; a block kept by no example is not computed at all (x_j = S_j), which is what makes structured
LayerDrop cheaper. BlockStack (below) is the same interface for library blocks (timm, torchvision, transformers)
that carry their own shortcut.
"""
import contextlib
import math

import torch
from torch import nn

from lpa_core import kernels
from lpa_core.topology import Cascade, make_topology, mix_states


class ResidualStack(nn.Module):
    """stem -> blocks[:depth] -> head; subclasses set stem, blocks (ModuleList of branches), head, n_runs, then
    call `connect` to choose the topology (it may attach coefficients to the blocks)."""

    def connect(self, topology="cascade", tau=0.1, normalisation="ingoing", wiring="replace"):
        self.topology = make_topology(topology, tau=tau, normalisation=normalisation, wiring=wiring)
        self.topology.attach(self.blocks, self.n_runs)
        self._params = {}

    keep = None  # per-block layer-dropout masks, set only inside `dropping`
    flop_all = None  # forward FLOPs per layer since the last step, every run alike (floats), while counting (lpa_core.task)
    flop_runs = None  # [R, L+2] float64: the same for forwards some runs skip (layer dropout), else None
    layer_flops = None  # forward FLOPs per example of [stem, block 1..L, head]; None: not counted

    def layers(self):
        """[stem, block 1..L, head]: the layers FLOPs are counted by (layer index 0..L+1)."""
        return [self.stem, *self.blocks, self.head]

    def counting(self, on):
        """Count training FLOPs (lpa_core.task) from now on, or stop (evaluation); a model without layer_flops never
        counts. Counts are plain floats (the hot path pays a few additions) unless a run skips a forward."""
        self.flop_all = [0.0] * len(self.layer_flops) if on and self.layer_flops is not None else None
        self.flop_runs = None

    def examples(self, x):
        """Examples in input x: run-stacked inputs are feature-major [R, d, B]."""
        return x.shape[-1]

    def count(self, j, x, k=None):
        """Layer j's forward on input x, for every run, or (k: the block's keep mask from `kept`) per run only where
        the run kept some example ([R, 1] or [R, B] masks; a [B] mask is every run's)."""
        if self.flop_all is None or k is False:
            return
        if torch.is_tensor(k) and k.dim() == 2:
            self.count_runs(x, [(j, k)])
        else:
            self.flop_all[j] += self.layer_flops[j] * self.examples(x)

    def count_blocks(self, x, keeps):
        """count(j, x, keeps[j - 1]) for blocks j = 1..len(keeps), the per-run masks in one go (the same sums)."""
        per_run = [(j, k) for j, k in enumerate(keeps, 1) if torch.is_tensor(k) and k.dim() == 2]
        for j, k in enumerate(keeps, 1):
            if not (torch.is_tensor(k) and k.dim() == 2):
                self.count(j, x, k)
        if per_run:
            self.count_runs(x, per_run)

    def count_runs(self, x, blocks):
        """Forward FLOPs of blocks [(j, mask [R, B] or [R, 1])] for each run that kept some example of block j."""
        if self.flop_all is None:
            return
        if self.flop_runs is None:
            self.flop_runs = torch.zeros(self.n_runs, len(self.layer_flops), dtype=torch.float64)
        js = [j for j, _ in blocks]
        ran = torch.stack([k.amax(1) > 0 for _, k in blocks], 1).cpu()  # [R, blocks]: the run kept some example
        self.flop_runs[:, js] += torch.tensor([float(self.layer_flops[j] * self.examples(x)) for j in js], dtype=torch.float64) * ran

    @contextlib.contextmanager
    def dropping(self, keep):
        """Layer dropout for the forwards inside: keep = one entry per block (a bool, or a bool tensor [B] per
        example); None keeps every block."""
        self.keep = None if keep is None else list(keep)
        try:
            yield self
        finally:
            self.keep = None

    def kept(self, j):
        """Block j's keep mask: None (all kept), False (none kept), or a float mask [B] for some."""
        k = None if self.keep is None else self.keep[j - 1]
        if k is None or k is True or (torch.is_tensor(k) and bool(k.all())):
            return None
        if k is False or not bool(k.any()):
            return False
        return k.float()

    def gate(self, f, k):
        """The branch f [R, d, B] with the examples of keep mask k kept: k [B] (every run alike) or [R, B] (per run)."""
        return f * k.to(f.dtype).view(k.shape[0] if k.dim() == 2 else 1, 1, -1)

    def states(self, x, depth=None):
        """[x_0, x_1, ..., x_depth]: the stem output, then x_j = F_j(x_{j-1}) + S_j(x_0..x_{j-1})."""
        xs = [self.stem(x)]
        self.count(0, x)
        for j, (block, w) in enumerate(zip(list(self.blocks)[:depth], self.topology.weights(self.blocks, depth)), 1):
            k = self.kept(j)
            self.count(j, x, k)
            f = torch.zeros_like(xs[-1]) if k is False else block(xs[-1])
            xs.append(self.topology.join(f if k is None or k is False else self.gate(f, k), xs, w))
        return xs

    def features(self, x, depth=None):
        return self.states(x, depth)[1:]

    def forward(self, x, depth=None):
        self.count(len(self.blocks) + 1, x)
        return self.head(self.states(x, depth)[-1])

    def params(self, depth=None, first=0):
        key = (depth, first)  # cached: the lists are the same Parameter objects every step
        if key not in self._params:
            mods = [self.stem, *self.blocks[first:depth], self.head]
            self._params[key] = [p for m in mods for p in m.parameters()]
        return self._params[key]

    @property
    def depth(self):
        return len(self.blocks)


class BlockStack(ResidualStack):
    """A residual stack of library blocks: each block maps h -> h + F(h) with its own shortcut inside (timm's ViT
    Block, torchvision's BasicBlock, a transformers decoder layer). States are batch-first; one run (n_runs = 1).

    Under cascade (the default) the blocks run as the library wrote them. Under another topology the block's own
    cascaded shortcut is replaced by the topology's mix, at block level (ANCRe's placement for Transformers):

        x_j = block_j(x_{j-1}) - P_j(x_{j-1}) + sum_{i<j} p_ij P_j(x_i)

    block_j(h) - P_j(h) is block j's branch; P_j maps a state to block j's output shape, parameter-free (identity
    where every block keeps the shape, as in ViTs and decoders; ResNetStack.project pools and zero-pads). With
    p_{j-1,j} = 1 and every other p_ij = 0 this is the library model again (up to rounding). A block dropped by
    `dropping` leaves x_j = sum_i p_ij P_j(x_i) (cascade: P_j(x_{j-1})), without running the block. Under wiring
    `add` (the authors' code) the block keeps its own shortcut: x_j = block_j(x_{j-1}) + sum_i p_ij P_j(x_i), and
    a dropped block leaves P_j(x_{j-1}) + sum_i p_ij P_j(x_i)."""

    n_runs = 1
    amp = False

    def project(self, h, j, ref):
        """State h in the shape of block j's output, for the block's input ref (identity: blocks that keep the
        shape). Linear, and h itself where the shape does not change."""
        return h

    def unproject(self, g, j, ref, shape):
        """The transpose of `project` (a state of `shape` into block j): g in block j's output shape -> `shape`."""
        return g

    def gate(self, f, k):
        return f * k.to(f.dtype).view(-1, *[1] * (f.dim() - 1))

    def examples(self, x):
        """Examples in input x: batch-first (images; token sequences, whose layer_flops are per sequence)."""
        return x.shape[0]

    def step(self, j, xs, w):
        """x_j from the states xs = [x_0..x_{j-1}] and block j's topology weights w. The mix is one fused running
        sum that keeps no copies for backward (lpa_core.topology.mix_states); for a block kept whole under wiring
        replace, its own shortcut is folded into the coefficients (p_{j-1,j} - 1 on x_{j-1}), so one-hot
        coefficients give the library block's output bit for bit; under add it stays."""
        block, h, k, add = self.blocks[j - 1], xs[-1], self.kept(j), self.topology.add
        self.count(j, h, k)
        mix = self.topology.block_weights(w, xs)  # (p, states), None under cascade
        P, PT = lambda x: self.project(x, j, h), lambda g, shape: self.unproject(g, j, h, shape)
        if k is False:
            return P(h) if mix is None else mix_states(P(h) if add else torch.zeros_like(P(h)), *mix, P, PT)
        out = block(h)
        if k is None:
            if mix is None:
                return out
            p, states = mix
            return mix_states(out, p if add else torch.cat([p[:-1], p[-1:] - 1]), states, P, PT)
        f = self.gate(out - P(h), k)
        return P(h) + f if mix is None else mix_states(P(h) + f if add else f, *mix, P, PT)

    def walk(self, x, depth=None):
        """x_1..x_depth one at a time (a generator). Under cascade only the last state is kept alive, so
        evaluating every depth costs one representation, not L."""
        xs = [self.stem(x)]
        self.count(0, x)
        for j, w in enumerate(self.topology.weights(self.blocks, depth), 1):
            h = self.step(j, xs, w)
            xs = [h] if isinstance(self.topology, Cascade) else xs + [h]
            yield h

    def states(self, x, depth=None):
        xs = [self.stem(x)]
        self.count(0, x)
        for j, w in enumerate(self.topology.weights(self.blocks, depth), 1):
            xs.append(self.step(j, xs, w))
        return xs

    def autocast(self):
        """bf16 autocast on the parameters' device (CUDA, or CPU under precision bf16) where the vision and LM tasks
        set `amp`, else nothing."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=next(self.parameters()).device.type, dtype=torch.bfloat16)

    def features(self, x, depth=None):
        with self.autocast():
            return list(self.walk(x, depth))

    def forward(self, x, depth=None):
        with self.autocast():
            h = None
            for h in self.walk(x, depth):
                pass
            self.count(len(self.blocks) + 1, x)
            return self.head(self.stem(x) if h is None else h)


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


class Tape:
    """What `ResMLP.tape` keeps for `ResMLP.backward`: the input x, the states x_0..x_depth, and per block its
    hidden activation a_j and keep mask (None: kept, False: dropped, else the float gate of `gate`)."""
    __slots__ = ("x", "xs", "acts", "keeps")

    def __init__(self, x, xs, acts, keeps):
        self.x, self.xs, self.acts, self.keeps = x, xs, acts, keeps


class ResMLP(ResidualStack):
    """The paper's residual MLP (Sec 5.1): linear stem d_in->width, `depth` blocks of width `width`, linear head.
    Inputs [R, d_in, B], outputs [R, d_out, B]. `topology`, `tau`, `normalisation`, `wiring`: see lpa_core.topology.

    A fast path for the cascade topology with ReLU (`fast`; lpa_core.surfaces uses it unless LPA_FAST=0): `tape`
    is the forward without autograd, keeping the activations, and `backward` a hand-written backward that writes
    each gradient straight into its parameter's .grad (views of RunAdam's flat buffer). The ops are the ones
    autograd runs for the same forward (baddbmm, relu, add; bmm against the transposes, sums over the batch,
    threshold_backward), so the gradients are autograd's bit for bit (tested in float64 and float32). Layer
    dropout gates by selection (where) rather than by product: the same numbers wherever the branch is finite, and
    a run whose dropped block is not finite (a run trained alone never computes it) gets exact zeros from it,
    forward and backward, as alone. What it
    saves is the graph, the engine and the gradient copies: per op, not per FLOP (benchmarks/profile_step.py)."""

    def __init__(self, seeds, d_in=2, d_out=1, width=10, depth=6, activation="relu", topology="cascade", tau=0.1,
                 normalisation="ingoing", wiring="replace"):
        super().__init__()
        self.n_runs = len(seeds)
        self.stem = RunLinear(self.n_runs, d_in, width)
        self.blocks = nn.ModuleList(MLPBlock(self.n_runs, width, activation) for _ in range(depth))
        self.head = RunLinear(self.n_runs, width, d_out)
        gens = [torch.Generator().manual_seed(1_000_003 + s) for s in seeds]  # init stream, separate from data
        for m in self.modules():
            if isinstance(m, RunLinear):
                m.reset(gens)
        self.connect(topology, tau=tau, normalisation=normalisation, wiring=wiring)
        self.fast = isinstance(self.topology, Cascade) and activation == "relu"
        lins = (self.stem, *(f for b in self.blocks for f in (b.fc1, b.fc2)), self.head)
        self.kernel_params = [p for m in lins for p in (m.weight, m.bias)]  # lpa_core.kernels' order
        self.workspace = kernels.Workspace()  # the training tapes' buffers
        self.layer_flops = [2 * sum(p[0].numel() for n, p in m.named_parameters() if n.endswith("weight")) for m in self.layers()]

    @torch.no_grad()
    def tape(self, x, depth=None, exits=None):
        """(prediction at `depth`, tape) without autograd: the compiled kernels where they run (lpa_core.kernels),
        else the same ops, in the same order, as `forward` (Tape). With `exits` (increasing depths, kernels only):
        (predictions [n_exits, R, d_out, B] of the shared head at each, tape) for the depth of the last."""
        depth = len(range(len(self.blocks))[:exits[-1] if exits else depth])  # slicing the ModuleList would build one
        keeps = [self.kept(j) for j in range(1, depth + 1)]
        self.count(0, x)
        for _ in exits or [depth]:
            self.count(len(self.blocks) + 1, x)
        self.count_blocks(x, keeps)
        if kernels.available(x):
            pred, tape = kernels.forward(self.kernel_params, x, keeps, exits or [depth], self.workspace)
            return (pred if exits else pred[0]), tape
        if exits:
            raise ValueError("tape: exits need the compiled kernels (lpa_core.kernels)")
        h = self.stem(x)
        xs, acts, gates = [h], [], []
        for block, k in zip(self.blocks, keeps):
            a = None
            if k is not None and k is not False:  # gated by selection, not by product: a gated-off branch adds an
                k = k.view(k.shape[0] if k.dim() == 2 else 1, 1, -1) > 0  # exact 0 even where it is not finite
            if k is not False:
                a = torch.relu(block.fc1(h))
                f = block.fc2(a)
                h = h + (f if k is None else torch.where(k, f, 0))
            xs.append(h)
            acts.append(a)
            gates.append(k)
        return self.head(h), Tape(x, xs, acts, gates)

    @torch.no_grad()
    def predict(self, x, depths):
        """Predictions [len(depths), R, d_out, B] of the shared head at the increasing `depths` (the compiled kernels,
        no tape: evaluation; FLOPs are not counted); None where the kernels do not run here."""
        if not (self.fast and kernels.available(x)):
            return None
        return kernels.forward(self.kernel_params, x, [self.kept(j) for j in range(1, depths[-1] + 1)], depths)[0]

    @torch.no_grad()
    def backward(self, tape, g, params):
        """Gradients of sum(g * prediction) (g [R, d_out, B]) into the .grad of the parameters in `params` (a set
        of ids); the others get none, though the gradient flows through them to the stem."""
        if isinstance(tape, kernels.Tape):  # g: [R, d_out, B], or [n_exits, R, d_out, B] for a tape of exits
            want = [id(w) in params for w in self.kernel_params[::4] + self.kernel_params[-2:-1]]  # stem, each fc2, head
            return kernels.backward(self.kernel_params, tape, g if g.dim() == 4 else g[None], want)

        def linear(lin, g, inp):  # weight and bias gradients of lin(inp) for output gradient g
            if id(lin.weight) in params:  # (computed apart and copied: a bmm into a strided view loops per run)
                lin.weight.grad.copy_(torch.bmm(g, inp.transpose(1, 2)))
                lin.bias.grad.copy_(g.sum(2, keepdim=True))

        linear(self.head, g, tape.xs[-1])
        g = torch.bmm(self.head.weight.transpose(1, 2), g)
        for j in range(len(tape.acts), 0, -1):
            k, a, block = tape.keeps[j - 1], tape.acts[j - 1], self.blocks[j - 1]
            if k is False:
                continue
            gf = g if k is None else torch.where(k, g, 0)
            linear(block.fc2, gf, a)
            gz = torch.ops.aten.threshold_backward(torch.bmm(block.fc2.weight.transpose(1, 2), gf), a, 0)
            linear(block.fc1, gz, tape.xs[j - 1])
            gx = torch.bmm(block.fc1.weight.transpose(1, 2), gz)
            g = g + (gx if k is None else torch.where(k, gx, 0))
        linear(self.stem, g, tape.x)


PRUNE_RATES = (0.25, 0.5)  # LayerDrop pruning rates evaluated after a layerdrop run (pruned.csv): keep 3/4, 1/2 of the blocks


def keep_pattern(n_blocks, rate):
    """Blocks kept (bools, block 1 first) when pruning a LayerDrop-trained stack at `rate`: LayerDrop's "every
    other" strategy, drop the blocks at depth d = 0 (mod floor(1/rate)), d = 1..L (rate 0.5: blocks 2, 4, 6, ...;
    0.25: blocks 4, 8, ...). Block 1 is always kept. rate 0 keeps all."""
    if not 0 <= rate <= 0.5:
        raise ValueError(f"rate: LayerDrop pruning keeps every k-th block, k = floor(1/rate) >= 2: need 0 <= rate <= 0.5, got {rate}")
    if rate == 0:
        return [True] * n_blocks
    k = int(1 / rate + 1e-9)
    return [d % k != 0 for d in range(1, n_blocks + 1)]


ARCHS = {"resmlp": ResMLP}  # builders with lpa_core.registry.create_model's signature (seeds=, d_in=, d_out=, **keys)
