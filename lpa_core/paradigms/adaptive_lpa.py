import torch

from lpa_core.paradigms.lpa import lpa


def adaptive_lpa(ctx, epoch):
    """Adaptive LPA (Algorithm 2, appendix D).

    Epochs < N_pre: plain LPA (warm-up). Later epochs: per batch, for i = 1..L take the LPA step at depth i, then
    stop adding depth once the batch metric (accuracy; minus MSE for regression) fails to improve on alpha,
    recording the depth i where it stopped; a batch that improves at every depth records L (our choice: the
    algorithm records nothing then, and the prose says all layers are used). depth = max of the records; then one
    pass training stem, blocks 1..depth and head at that depth. alpha is the previous depth's metric of the same
    batch (cfg.adaptive_alpha='batch', Sec 5.3's prose) or the best metric ever seen ('run', Alg. 2 as printed).
    Each run of a vectorised group decides for itself; the effective depth of the run is the depth of its last
    epoch (ctx.state['depth'])."""
    if epoch < ctx.cfg.adaptive_warmup:
        return lpa(ctx, epoch)
    L, R = ctx.model.depth, ctx.n_runs
    alpha = ctx.state.setdefault("alpha", torch.full((R,), -float("inf")))
    record = torch.zeros(R, dtype=torch.long)
    for x, y in ctx.batches():
        going = torch.ones(R, dtype=torch.bool)
        if ctx.cfg.adaptive_alpha == "batch":
            alpha.fill_(-float("inf"))
        for i in range(1, L + 1):
            losses, metric = ctx.loss(x, y, depth=i, metric=True)
            metric = metric.cpu()  # the decision state (alpha, going, record) lives on the CPU
            ctx.step(losses, ctx.model.params(depth=i), runs=going)
            stop = going & (metric <= alpha)
            record = torch.where(stop, torch.maximum(record, torch.tensor(i)), record)
            alpha.copy_(torch.where(going & ~stop, metric, alpha))
            going &= ~stop
            if not going.any():
                break
        record = torch.where(going, torch.tensor(L), record)
    ctx.state["depth"] = record
    for x, y in ctx.batches():
        for d in record.unique().tolist():  # runs that chose the same depth step together; each run steps once
            ctx.step(ctx.loss(x, y, depth=d), ctx.model.params(depth=d), runs=record == d)
