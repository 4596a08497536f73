def stage(step, steps, n_blocks):
    """The block (1-based) trained at batch `step` (0-based) of a budget of `steps` batches: the budget is split
    evenly over the blocks, in order (block i gets batches [(i-1)T/L, iT/L)). Counted in batches, not epochs, so
    that with fewer epochs than blocks every block still trains (a quick or CPU budget); when L divides the
    epochs, every stage is whole epochs."""
    return min(step * n_blocks // steps + 1, n_blocks)


def sequential(ctx, epoch):
    """Greedy layer-by-layer (Eq. 15): block i trains with the stem and the shared head; blocks < i are frozen
    (used in the forward, never updated), blocks > i are off."""
    nb, L, current, params = ctx.n_batches, ctx.model.depth, None, None
    for b, (x, y) in enumerate(ctx.batches()):
        i = stage(epoch * nb + b, ctx.cfg.epochs * nb, L)
        if i != current:
            current, params = i, ctx.model.params(depth=i, first=i - 1)
        ctx.step(ctx.loss(x, y, depth=i), params)
