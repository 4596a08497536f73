"""Training paradigms. Each is one function `epoch(ctx, epoch)` that does its updates for one epoch through the
shared step primitive `ctx.step(losses, params, runs, blocks)` (lpa_core.task.Task.step), handing it the losses
of `ctx.loss` / `ctx.loss_at` unchanged (on the surfaces' fast path they carry the forward's tape). Their names
(and a plugin's, @lpa_core.registry.register_paradigm) live in lpa_core.registry.PARADIGMS."""
from lpa_core.paradigms.adaptive_lpa import adaptive_lpa  # noqa: F401
from lpa_core.paradigms.deep_supervision import deep_supervision  # noqa: F401
from lpa_core.paradigms.layerdrop import layerdrop  # noqa: F401
from lpa_core.paradigms.layerskip import layerskip  # noqa: F401
from lpa_core.paradigms.lpa import lpa, lpa_grouped  # noqa: F401
from lpa_core.paradigms.sequential import sequential  # noqa: F401
from lpa_core.paradigms.simultaneous import simultaneous  # noqa: F401
from lpa_core.registry import PARADIGMS


def get_paradigm(name):
    return PARADIGMS[name]
