"""Per-op profile of one step of each paradigm on the paper's surface job (35 runs, width 10, depth 6, batch 100).

    python benchmarks/profile_step.py [--batches 20] [--top 8] [--out results/benchmarks/profile_step.txt]

For each paradigm of Table 1 it builds the vectorised job the workflow runs (7 surfaces x 5 seeds as one model,
one thread), trains one warm-up epoch of `--batches` batches, then profiles one more epoch of `--batches`
batches with torch.profiler and prints the milliseconds per batch and per optimizer step, the op count per step
and the `--top` ops by self CPU time. It profiles whatever `lpa_core` is first on the path (benchmarks/
table1_speed.py runs it on today's and on the base commit's code); LPA_FAST=0 selects the autograd path.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import yaml
from torch.profiler import ProfilerActivity, profile

if __package__ is None and "lpa_core" not in sys.modules:  # run as a script: this checkout's lpa_core unless PYTHONPATH names one
    sys.path.append(str(Path(__file__).resolve().parent.parent))
from lpa_core.config import TrainConfig  # noqa: E402
from lpa_core.paradigms import PARADIGMS  # noqa: E402
from lpa_core.surfaces import SurfaceTask  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def job(paradigm, batches):
    exp = yaml.safe_load((ROOT / "config/config.yaml").read_text())["table1"]
    keys = {f.name for f in TrainConfig.__dataclass_fields__.values()}
    train = {k: v for k, v in exp["train"].items() if k in keys}
    train.update(n_train=batches * train["batch_size"], adaptive_warmup=1)
    cfg = TrainConfig(exp="profile", arch=exp["arch"], paradigm=paradigm, datasets=tuple(exp["datasets"]),
                      seeds=tuple(exp["seeds"]), **{k: tuple(v) if isinstance(v, list) else v for k, v in train.items()})
    return SurfaceTask(cfg)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--paradigms", default="")
    p.add_argument("--out", default="")
    a = p.parse_args()
    torch.set_num_threads(1)
    names = a.paradigms.split(",") if a.paradigms else list(PARADIGMS)
    lines = []
    for name in names:
        ctx = job(name, a.batches)
        PARADIGMS[name](ctx, 0)  # warm-up epoch (adaptive_lpa: its LPA warm-up); the profiled epoch is epoch 1
        steps0 = int(ctx.steps.max())
        t = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            PARADIGMS[name](ctx, 1)
        wall = time.perf_counter() - t
        steps = int(ctx.steps.max()) - steps0
        ev = prof.key_averages()
        n_ops = sum(e.count for e in ev if e.cpu_parent is None) if hasattr(ev[0], "cpu_parent") else None
        top_level = sum(e.count for e in prof.events() if e.cpu_parent is None)
        head = (f"{name:17s} {1e3 * wall / a.batches:7.2f} ms/batch (profiled) | {steps / a.batches:4.1f} steps/batch | "
                f"{top_level / max(steps, 1):6.1f} top-level ops/step")
        print(head, flush=True)
        table = ev.table(sort_by="self_cpu_time_total", row_limit=a.top, max_name_column_width=36)
        lines += [head, table]
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text("\n".join(lines) + "\n")
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
