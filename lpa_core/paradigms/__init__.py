"""Training paradigms. Each is one function `epoch(ctx, epoch)` that does its updates for one epoch through the
shared step primitive `ctx.step(losses, params, runs, blocks)` (lpa_core.task.Task.step), handing it the losses
of `ctx.loss` / `ctx.loss_at` unchanged (on the surfaces' fast path they carry the forward's tape)."""
from lpa_core.paradigms.adaptive_lpa import adaptive_lpa
from lpa_core.paradigms.deep_supervision import deep_supervision
from lpa_core.paradigms.layerdrop import layerdrop
from lpa_core.paradigms.layerskip import layerskip
from lpa_core.paradigms.lpa import lpa, lpa_grouped
from lpa_core.paradigms.sequential import sequential
from lpa_core.paradigms.simultaneous import simultaneous

PARADIGMS = {f.__name__: f for f in (simultaneous, sequential, lpa, adaptive_lpa, lpa_grouped, deep_supervision,
                                     layerskip, layerdrop)}


def get_paradigm(name):
    if name not in PARADIGMS:
        raise ValueError(f"paradigm: unknown '{name}' (valid: {', '.join(PARADIGMS)})")
    return PARADIGMS[name]
