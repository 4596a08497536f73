def progressive(ctx, x, y, depths):
    """Lines 4-10 of Algorithm 1: for each depth, loss at that depth, backward, step on stem, blocks 1..depth, head."""
    for d in depths:
        ctx.step(ctx.loss(x, y, depth=d), ctx.model.params(depth=d))


def lpa_over(ctx, depths):
    """One epoch of Algorithm 1 over the given prefix depths, then the full-depth pass (lines 11-16).
    cfg.lpa_e2e='epoch' (as printed) runs the full pass over all batches after the progressive pass;
    'batch' does one full-depth step right after each batch's progressive steps."""
    full = ctx.model.params()
    for x, y in ctx.batches():
        progressive(ctx, x, y, depths)
        if ctx.cfg.lpa_e2e == "batch":
            ctx.step(ctx.loss(x, y), full)
    if ctx.cfg.lpa_e2e == "epoch":
        for x, y in ctx.batches():
            ctx.step(ctx.loss(x, y), full)


def unit_depths(n_blocks, k):
    """Prefix depths when LPA works on units of k consecutive blocks: k, 2k, ..., n_blocks (a last, shorter unit
    if k does not divide n_blocks)."""
    return sorted(set(range(k, n_blocks, k)) | {n_blocks})


def lpa(ctx, epoch):
    """Layer-wise Progressive Approximation (Algorithm 1): L+1 optimizer steps per batch."""
    lpa_over(ctx, range(1, ctx.model.depth + 1))


def lpa_grouped(ctx, epoch):
    """LPA over units of cfg.group_size blocks (Sec 5.4): ceil(L/k)+1 steps per batch."""
    lpa_over(ctx, unit_depths(ctx.model.depth, ctx.cfg.group_size))
