"""LayerDrop (Fan et al. 2019, "Reducing Transformer Depth on Demand with Structured Dropout"; fairseq's
LayerDropModuleList): structured layer dropout in training, pruned sub-networks at inference."""
import torch

PRUNE_RATES = (0.25, 0.5)  # the pruning rates evaluated after a layerdrop run (pruned.csv): keep 3/4, 1/2 of the blocks


class SeedRNG:
    """Random draws for a paradigm, one CPU generator per seed: every run draws from its seed's generator, so a run
    draws the same whatever group it trains in (runs of one seed share the draws). The generators' states live
    in ctx.state[name], so a resumed job draws what an uninterrupted one would; call `save()` at the epoch's end."""

    def __init__(self, ctx, name, offset):
        self.ctx, self.name = ctx, name
        self.gens = {s: torch.Generator().manual_seed(offset + s) for s in sorted({s for _, s in ctx.cfg.runs})}
        for g, state in zip(self.gens.values(), ctx.state.get(name, [])):
            g.set_state(state.clone())  # a row of the stacked states: set_state needs a tensor of its own

    def rand(self, *shape):
        """Uniform draws [R, *shape] on the CPU: row r from run r's seed."""
        draws = {s: torch.rand(shape, generator=g) for s, g in self.gens.items()}
        return torch.stack([draws[s] for _, s in self.ctx.cfg.runs])

    def save(self):
        self.ctx.state[self.name] = torch.stack([g.get_state() for g in self.gens.values()])


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


def kept_params(model, keep):
    """Parameters of the stem, the kept blocks (with the shortcut coefficients they own) and the head."""
    mods = [model.stem, *(b for b, k in zip(model.blocks, keep) if k), model.head]
    return [p for m in mods for p in m.parameters()]


def layerdrop(ctx, epoch):
    """Per batch, each block is dropped with probability cfg.layerdrop_rate for the whole batch (structured: a
    dropped block is not computed, x_j = S_j), one full-depth step on the stem, the kept blocks and the head:
    dropped blocks get no gradient, weight decay or optimizer-state change. No rescaling of kept blocks (fairseq
    does none). A run draws its blocks from its seed's stream (SeedRNG); in a vectorised group, runs that drew
    the same blocks step together (one forward and step per distinct draw, as adaptive_lpa's depths)."""
    model, rng = ctx.model, SeedRNG(ctx, "layerdrop_rng", 3_000_017)
    for x, y in ctx.batches():
        keep = rng.rand(model.depth) >= ctx.cfg.layerdrop_rate  # [R, L]; rate 0 keeps every block
        for pattern in keep.unique(dim=0):
            runs = (keep == pattern).all(dim=1)
            kept = pattern.tolist()
            with model.dropping(kept):
                losses = ctx.loss(x, y)
            ctx.step(losses, kept_params(model, kept), runs=None if runs.all() else runs)
    rng.save()
