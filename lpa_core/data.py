"""Synthetic 2-D surfaces of the LPA paper (Table 1, Sec 5.1) and the second version's stripe.

Choice where the paper is silent: inputs are drawn uniformly from a square domain, default [-1, 1]^2
(configurable as `domain`); targets are the raw function values (no normalisation), so MSE/MAE are on the
paper's scale. Train and test points are independent draws from the run's seed; the validation points (model
selection: lpa_core.tune) are a third, independent draw (make_val).
"""
import torch

SURFACES = {  # the built-in definitions; their names and a plugin's: lpa_core.registry.SURFACES
    "high_freq": lambda x, y: torch.sin(4 * x) + torch.cos(4 * y),
    "local_bump": lambda x, y: torch.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.1),
    "saddle": lambda x, y: x**2 - y**2,
    "nonint_powers": lambda x, y: (x.abs() ** 0.7 + y.abs() ** 1.3) * torch.sin(4 * x),
    "log_singularity": lambda x, y: torch.log(x**2 + y**2 + 1e-5) * torch.cos(5 * x),
    # as printed in the paper: sin(4x^2+y^2) / (x^2+y^2+0.001)^(-2), i.e. the amplitude grows with radius
    "radial_decay": lambda x, y: torch.sin(4 * x**2 + y**2) / (x**2 + y**2 + 0.001) ** (-2),
    "hf_stripe": lambda x, y: torch.exp(-5 * (x**2 + y**2)) * torch.sin(10 * x),
}


def surface(name, xy):
    """Target values [N, 1] of surface `name` at points xy [N, 2]."""
    from lpa_core.registry import SURFACES as REG

    return REG[name](xy[:, 0], xy[:, 1]).unsqueeze(-1)


def make_surface(name, n_train, n_test, seed, domain=(-1.0, 1.0)):
    """(x_train, y_train, x_test, y_test), float32, drawn uniformly from domain^2 with generator `seed`."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = domain
    xy = lo + (hi - lo) * torch.rand(n_train + n_test, 2, generator=g, dtype=torch.float64)
    z = surface(name, xy)
    xy, z = xy.float(), z.float()
    return xy[:n_train], z[:n_train], xy[n_train:], z[n_train:]


def make_val(name, n_val, seed, domain=(-1.0, 1.0)):
    """(x_val, y_val): the run's fixed validation sample, n_val points drawn like make_surface's from a generator
    of their own (4_000_037 + seed), so adding it changes no training or test point."""
    g = torch.Generator().manual_seed(4_000_037 + seed)
    lo, hi = domain
    xy = lo + (hi - lo) * torch.rand(n_val, 2, generator=g, dtype=torch.float64)
    return xy.float(), surface(name, xy).float()


def grid(n, domain=(-1.0, 1.0)):
    """A regular n x n plotting grid: (axis [n], points [n*n, 2]) with points in row-major (y, x) order."""
    axis = torch.linspace(domain[0], domain[1], n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return axis, torch.stack([xx.flatten(), yy.flatten()], dim=1)
