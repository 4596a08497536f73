"""LayerSkip (Elhoushi et al. 2024) as its recipe is published in torchtune (modules/layer_dropout.py,
modules/early_exit_loss.py): per-example layer dropout rising with depth, plus early-exit losses through the
shared head at the depths a curriculum enables."""
import math

import torch

from lpa_core.models import BlockStack
from lpa_core.paradigms.layerdrop import SeedRNG

GRADUAL_FRACTION = 0.5  # gradual curriculum: every exit is on after this fraction of the epochs (torchtune's default)


def dropout_rates(n_blocks, p_max, scale="exp"):
    """Per-example dropout rate of blocks 1..L: p_max * S(u), u = (j-1)/(L-1), rising from 0 at the first block
    to p_max at the last; S(u) = 2^u - 1 (exp, torchtune's default layers_scale) or u (linear). One block: p_max."""
    if n_blocks == 1:
        return [p_max]
    S = {"exp": lambda u: math.exp(u * math.log(2)) - 1, "linear": lambda u: u}[scale]
    return [p_max * S((j - 1) / (n_blocks - 1)) for j in range(1, n_blocks + 1)]


def exit_depths(n_blocks, curriculum, step, progress, every=2):
    """Depths whose loss counts at this step; the full depth L always does. Early exits j < L:
    rotational  j = step (mod every): every `every`-th block, the set rotating by one block per step
    gradual     enabled from the last block down as training goes: j once progress >= 0.5 (L - j + 1) / L
                (torchtune's GradualEarlyExitCurriculum); every exit is on from half-way
    none        no early exit (layer dropout only)
    `step` counts this job's batches, `progress` is the fraction of epochs done (epoch granularity)."""
    L = n_blocks
    if curriculum == "rotational":
        early = [j for j in range(1, L) if j % every == step % every]
    elif curriculum == "gradual":
        early = [j for j in range(1, L) if progress >= GRADUAL_FRACTION * (L - j + 1) / L]
    elif curriculum == "none":
        early = []
    else:
        raise ValueError(f"layerskip_curriculum: unknown '{curriculum}' (valid: rotational, gradual, none)")
    return early + [L]


def exit_weights(depths, n_blocks, e_scale=1.0):
    """LayerSkip's loss scales, normalised to sum 1 over the enabled depths: e(j) = e_scale * (1 + 2 + ... + j)
    for an early exit, 1 + 2 + ... + L for the full depth (the paper's sum scale, blocks counted from 1 so the
    first exit is not weighted 0). Deeper exits weigh more; e_scale 0 leaves the full-depth loss alone."""
    e = [(e_scale if d < n_blocks else 1.0) * d * (d + 1) / 2 for d in depths]
    return [v / sum(e) for v in e]


def example_masks(ctx, rng, rates, x):
    """Per-block keep masks, one draw per example: [R, B] per block on the run-stacked models (batch last),
    [B] on a BlockStack (batch first). A block's examples are kept with probability 1 - p_j."""
    per_run = not isinstance(ctx.model, BlockStack)
    B = x.shape[-1] if per_run else x.shape[0]
    keep = (rng.rand(len(rates), B) >= torch.tensor(rates)[:, None]).to(x.device)  # [R, L, B]
    return [keep[:, j] if per_run else keep[0, j] for j in range(len(rates))]


def layerskip(ctx, epoch):
    """Per batch: per-example layer dropout (cfg.layerskip_pmax, cfg.layerskip_scale; no rescaling of kept
    branches, as LayerSkip), one forward for every depth's representation, loss = the normalised sum of the
    full-depth loss and the early-exit losses through the shared head (cfg.layerskip_curriculum,
    cfg.layerskip_rotation, cfg.layerskip_exit_scale), one step on every parameter. Early exits see the same
    dropped forward, as in the recipe. A block kept by no example of a batch is not computed."""
    cfg, model, L = ctx.cfg, ctx.model, ctx.model.depth
    rng, rates, params = SeedRNG(ctx, "layerskip_rng", 3_000_029), dropout_rates(L, cfg.layerskip_pmax, cfg.layerskip_scale), ctx.model.params()
    step = int(ctx.state.get("layerskip_step", 0))
    for x, y in ctx.batches():
        keep = example_masks(ctx, rng, rates, x) if cfg.layerskip_pmax > 0 else None
        depths = exit_depths(L, cfg.layerskip_curriculum, step, epoch / cfg.epochs, cfg.layerskip_rotation)
        weights = exit_weights(depths, L, cfg.layerskip_exit_scale)
        on = [(d, w) for d, w in zip(depths, weights) if w]
        with model.dropping(keep):
            loss = ctx.exits(x, y, [d for d, _ in on], [w for _, w in on])
        ctx.step(loss, params)
        step += 1
    ctx.state["layerskip_step"] = torch.tensor(step)
    rng.save()
