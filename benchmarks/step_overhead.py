"""Where a vectorised surface job's time goes besides the compiled kernels, and whether the cache is why it grows.

    python benchmarks/step_overhead.py [--paradigm lpa_grouped] [--batches 100] [--epochs 3] [--sweep-mb 0,3,8]

One thread, the paper's Table 1 job (benchmarks/profile_step.py's: 7 surfaces x 5 seeds as one model) and the same
job for one run (one surface, one seed). For each, CPU milliseconds per batch over `--epochs` epochs of `--batches`
batches, split into the compiled kernels' calls (lpa_core.kernels) and the rest (the same Python and torch calls
whatever the number of runs). With a sweep of S MB, a numpy array of S MB is summed after every kernel call (its
time counted apart): if the rest of the one-run job then costs what the 35-run job's rest costs, the kernels' working
set evicting the interpreter's from the core's cache explains the growth (docs/surfaces.md).
"""
import argparse
import collections
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(1, str(ROOT))
import profile_step  # noqa: E402
from lpa_core import kernels  # noqa: E402
from lpa_core.registry import PARADIGMS  # noqa: E402
from lpa_core.surfaces import SurfaceTask  # noqa: E402


def timed(ctx, name, epochs, batches, sweep_mb):
    """(total, kernels, sweep) CPU ms per batch of `epochs` epochs of the paradigm on ctx."""
    spent, buf = collections.Counter(), np.ones(int(sweep_mb * 2**20 / 8))

    def timed_call(kernel, call):
        def run(*args):
            t = time.process_time()
            call(*args)
            t1 = time.process_time()
            if sweep_mb:
                buf.sum()
            spent["kernels"] += t1 - t
            spent["sweep"] += time.process_time() - t1
        return run
    PARADIGMS[name](ctx, 0)  # warm-up
    with profile_step.traced_kernels(timed_call):
        t = time.process_time()
        for e in range(epochs):
            PARADIGMS[name](ctx, 1 + e)
        total = time.process_time() - t
    n = 1e-3 * epochs * batches
    return total / n, spent["kernels"] / n, spent["sweep"] / n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paradigm", default="lpa_grouped")
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--sweep-mb", default="0,3,8", help="MB summed after each kernel call (0: none), comma-separated")
    a = p.parse_args()
    torch.set_num_threads(1)
    if not kernels.available(torch.zeros(1)):
        sys.exit("step_overhead: the compiled kernels do not run here (no C compiler, or LPA_KERNEL=torch)")
    for mb in [float(s) for s in a.sweep_mb.split(",")]:
        for one in (False, True):
            ctx = profile_step.job(a.paradigm, a.batches)
            if one:
                ctx = SurfaceTask(dataclasses.replace(ctx.cfg, datasets=ctx.cfg.datasets[:1], seeds=ctx.cfg.seeds[:1]))
            total, kern, sweep = timed(ctx, a.paradigm, a.epochs, a.batches, mb)
            print(f"{a.paradigm} {ctx.n_runs:3d} runs, sweep {mb:g} MB: {total:.3f} ms/batch = kernels {kern:.3f} + "
                  f"sweep {sweep:.3f} + rest {total - kern - sweep:.3f}", flush=True)


if __name__ == "__main__":
    main()
