def simultaneous(ctx, epoch):
    """Plain end-to-end training: one full-depth step per batch (the paper's Simultaneous, Eq. 14)."""
    for x, y in ctx.batches():
        ctx.step(ctx.loss(x, y), ctx.model.params())
