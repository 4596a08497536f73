"""LayerDrop (Fan et al. 2019, "Reducing Transformer Depth on Demand with Structured Dropout"; fairseq's
LayerDropModuleList): structured layer dropout in training; the pruned sub-networks evaluated at inference
(lpa_core.models.keep_pattern, PRUNE_RATES) are the tasks' business."""
import torch


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


def kept_params(model, keep):
    """Parameters of the stem, the kept blocks (with the shortcut coefficients they own) and the head; cached per
    pattern on the model (the same Parameter objects every step)."""
    cache, key = model.__dict__.setdefault("_kept_params", {}), tuple(bool(k) for k in keep)
    if key not in cache:
        mods = [model.stem, *(b for b, k in zip(model.blocks, key) if k), model.head]
        cache[key] = [p for m in mods for p in m.parameters()]
    return cache[key]


def layerdrop(ctx, epoch):
    """Per batch, each block is dropped with probability cfg.layerdrop_rate for the whole batch (structured: a
    dropped block is not computed, x_j = S_j), one full-depth step on the stem, the kept blocks and the head:
    dropped blocks get no gradient, weight decay or optimizer-state change. No rescaling of kept blocks (fairseq
    does none). A run draws its blocks from its seed's stream (SeedRNG). In a vectorised group every run takes
    its own pattern in one forward and one step: block j's branch is gated per run (keep [R, 1]; a block no run
    keeps is not computed) and, where the runs' patterns differ, `blocks` tells the step which blocks each run
    updates (otherwise the parameters list says it all: one run, or runs of one seed)."""
    model, rng = ctx.model, SeedRNG(ctx, "layerdrop_rng", 3_000_017)
    for x, y in ctx.batches():
        keep = rng.rand(model.depth) >= ctx.cfg.layerdrop_rate  # [R, L]; rate 0 keeps every block
        with model.dropping(list(keep.T[:, :, None].to(x.device))):  # block j: [R, 1], the whole batch per run
            losses = ctx.loss(x, y)
        ctx.step(losses, kept_params(model, keep.any(0).tolist()), blocks=None if (keep == keep[0]).all() else keep)
    rng.save()
