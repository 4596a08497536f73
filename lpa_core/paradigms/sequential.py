def stage(epoch, epochs, n_blocks):
    """The block (1-based) trained in `epoch` (0-based): the epoch budget is split evenly over the blocks, in order
    (block i gets epochs [(i-1)E/L, iE/L)); with E not a multiple of L the stages differ by at most one epoch."""
    return epoch * n_blocks // epochs + 1


def sequential(ctx, epoch):
    """Greedy layer-by-layer (Eq. 15): block i trains with the stem and the shared head; blocks < i are frozen
    (used in the forward, never updated), blocks > i are off."""
    i = stage(epoch, ctx.cfg.epochs, ctx.model.depth)
    params = ctx.model.params(depth=i, first=i - 1)
    for x, y in ctx.batches():
        ctx.step(ctx.loss(x, y, depth=i), params)
