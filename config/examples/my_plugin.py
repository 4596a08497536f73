"""A plugin: one file of your own that adds names to lpa-bench (lpa_core.registry), no edit to lpa_core.

Use it with `plugins: [config/examples/my_plugin.py]` in a workflow config (config/examples/plugin.yaml) or
`python -m lpa_core train --plugins config/examples/my_plugin.py ...`; a module name on PYTHONPATH works too.
"""
import torch

from lpa_core.models import ResMLP
from lpa_core.registry import register_model, register_paradigm, register_surface


@register_surface
def ripple(x, y):
    """A 2-D target function: x, y are torch tensors [N]; returns the target [N]."""
    r = torch.sqrt(x**2 + y**2)
    return torch.sin(8 * r) * torch.exp(-2 * r)


@register_paradigm
def lpa_warmstart(ctx, epoch):
    """A paradigm is one epoch of updates through ctx.step (docs/surfaces.md, "the paradigms and their contract"):
    here LPA's progressive pass in the first epoch, plain end-to-end training after it."""
    from lpa_core.paradigms import lpa, simultaneous

    (lpa if epoch == 0 else simultaneous)(ctx, epoch)


@register_model(task="surfaces")
def resmlp_wide(*, seeds, d_in, d_out, width, **kw):
    """Every model has one signature, whatever its task (lpa_core.registry.create_model): the runs' seeds, one
    example's input and output sizes from the data, and the task's TrainConfig model keys (surfaces: width, depth,
    activation, topology, tau, normalisation, wiring). A surface model stacks one run per seed ([R, d, B])."""
    return ResMLP(seeds, d_in, d_out, width=2 * width, **kw)
