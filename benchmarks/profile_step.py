"""Per-op profile of one step of each paradigm on the paper's surface job (35 runs, width 10, depth 6, batch 100).

    python benchmarks/profile_step.py [--batches 20] [--top 8] [--out results/benchmarks/profile_step.txt]

For each paradigm of Table 1 it builds the vectorised job the workflow runs (7 surfaces x 5 seeds as one model,
one thread), trains one warm-up epoch of `--batches` batches, then profiles one more epoch of `--batches`
batches with torch.profiler and prints the milliseconds per batch and per optimizer step, the op count per step
and the `--top` ops by self CPU time. It profiles this checkout's `lpa_core`, or the one in the tree that LPA_CODE names
(benchmarks/table1_speed.py runs it on both); LPA_FAST=0 selects the autograd path.
"""
import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch
import yaml
from torch.profiler import ProfilerActivity, profile, record_function

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("LPA_CODE", str(ROOT)))  # the lpa_core profiled: this checkout's, or the tree LPA_CODE names
from lpa_core.config import TrainConfig  # noqa: E402
from lpa_core.registry import PARADIGMS  # noqa: E402
from lpa_core.surfaces import SurfaceTask  # noqa: E402


def job(paradigm, batches):
    exp = yaml.safe_load((ROOT / "config/config.yaml").read_text())["table1"]
    keys = {f.name for f in TrainConfig.__dataclass_fields__.values()}
    train = {k: v for k, v in exp["train"].items() if k in keys}
    train.update(n_train=batches * train["batch_size"], adaptive_warmup=1)
    cfg = TrainConfig(exp="profile", arch=exp["arch"], paradigm=paradigm, datasets=tuple(exp["datasets"]),
                      seeds=tuple(exp["seeds"]), **{k: tuple(v) if isinstance(v, list) else v for k, v in train.items()})
    return SurfaceTask(cfg)


CATEGORIES = {"compiled kernels": ("kernels::",), "matmul": ("aten::bmm", "aten::baddbmm"), "optimizer/masks": ("aten::where", "aten::lerp", "aten::sqrt", "aten::div",
              "aten::copy_", "aten::fill_", "aten::zero_", "aten::cat"), "autograd engine": ("autograd::", "AccumulateGrad", "Backward")}


def in_profiler_event(name, call):
    """A kernel call as a profiler event 'kernels::<name>' (they are no torch ops: the profiler would not see them)."""
    def run(*args):
        with record_function(f"kernels::{name}"):
            return call(*args)
    return run


@contextlib.contextmanager
def traced_kernels(wrap=in_profiler_event):
    """Each call of the compiled kernels (lpa_core.kernels, where the profiled code has them) goes through
    wrap(name, call) while inside (default: a profiler event)."""
    try:
        from lpa_core import kernels
    except ImportError:
        yield
        return
    fn = kernels.fn
    kernels.fn = lambda name, dtype: wrap(name, fn(name, dtype))
    try:
        yield
    finally:
        kernels.fn = fn


def category(name):
    for cat, prefixes in CATEGORIES.items():
        if any(name.startswith(p) or p in name for p in prefixes):
            return cat
    return "other ops"


def profile_one(name, batches, repeats):
    """(ms per batch unprofiled, optimizer steps per batch, dispatched ops per step, {category: self-CPU share},
    the profiler's op table). Time is this process's CPU time (on a shared machine less contended than wall
    time), the median over `repeats` epochs spread over the schedule (sequential: every stage)."""
    ctx = job(name, batches)
    PARADIGMS[name](ctx, 0)  # warm-up epoch (adaptive_lpa: its LPA warm-up)
    times, steps0 = [], int(ctx.steps.max())
    for k in range(repeats):
        t = time.process_time()
        PARADIGMS[name](ctx, 1 + k * (ctx.cfg.epochs - 2) // repeats)
        times.append(time.process_time() - t)
    ms = 1e3 * sorted(times)[len(times) // 2] / batches
    steps = (int(ctx.steps.max()) - steps0) / (batches * repeats)
    steps1 = int(ctx.steps.max())
    with profile(activities=[ProfilerActivity.CPU]) as prof, traced_kernels():
        PARADIGMS[name](ctx, ctx.cfg.epochs // 2)
    events = prof.events()
    # an op dispatched from Python or by the autograd engine (not one nested inside another aten op)
    ops = sum(1 for e in events if e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))
    share = {}
    for e in events:
        share[category(e.name)] = share.get(category(e.name), 0) + e.self_cpu_time_total
    total = sum(share.values())
    return ms, steps, ops / (int(ctx.steps.max()) - steps1), {k: v / total for k, v in sorted(share.items())}, prof.key_averages()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=5, help="batches per epoch")
    p.add_argument("--repeats", type=int, default=9, help="timed epochs per paradigm (the median counts)")
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--paradigms", default="")
    p.add_argument("--out", default="")
    a = p.parse_args()
    torch.set_num_threads(1)
    with profile(activities=[ProfilerActivity.CPU]):  # the profiler's first start is slow: not in a paradigm's numbers
        torch.zeros(1) + 1
    lines = []
    for name in a.paradigms.split(",") if a.paradigms else list(PARADIGMS):
        ms, steps, ops, share, ev = profile_one(name, a.batches, a.repeats)
        head = (f"{name:17s} {ms:7.2f} ms/batch (CPU time, unprofiled) | {steps:4.1f} steps/batch | {ms / steps:6.3f} ms/step | "
                f"{ops:6.1f} ops/step | self CPU: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in share.items()))
        print(head, flush=True)
        lines += [head, ev.table(sort_by="self_cpu_time_total", row_limit=a.top, max_name_column_width=36)]
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
