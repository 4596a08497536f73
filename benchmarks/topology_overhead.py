"""Step time of the residual MLP under each residual topology, relative to cascade (one CPU thread, as every job).

    python benchmarks/topology_overhead.py [--runs 35] [--depth 6] [--batches 10] [--reps 5] [--paradigm simultaneous]

Times whole optimizer steps (forward, backward, RunAdam) through the training core's own Context and paradigm
epochs, topologies interleaved over `--reps` rounds; prints the median over rounds of seconds per step and the
ratio to cascade. On the CPU the clock is the thread's CPU time (time.thread_time: one torch thread runs in the
calling thread), which a loaded, shared machine disturbs far less than the wall clock; on CUDA it is wall time. The default is Table 1's group: 7 surfaces x 5 seeds = 35 runs, width 10, depth 6, batch 100.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lpa_core.config import TrainConfig  # noqa: E402
from lpa_core.paradigms import PARADIGMS  # noqa: E402
from lpa_core.train import Context  # noqa: E402

VARIANTS = [("cascade", "ingoing"), ("ancre", "ingoing"), ("ancre", "outgoing"), ("ancre", "none"),
            ("all_fixed", "ingoing"), ("gains", "ingoing")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=35)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--width", type=int, default=10)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--paradigm", default="simultaneous")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(1)
    ctxs = {}
    for topo, norm in VARIANTS:
        cfg = TrainConfig(seeds=tuple(range(a.runs)), depth=a.depth, width=a.width, n_train=100 * a.batches, n_test=100,
                          paradigm=a.paradigm, topology=topo, normalisation=norm, device=a.device)
        ctxs[topo, norm] = Context(cfg)
        PARADIGMS[a.paradigm](ctxs[topo, norm], 0)  # warm-up
    times = {k: [] for k in ctxs}
    for _ in range(a.reps):
        for k, ctx in ctxs.items():
            steps = int(ctx.steps[0])
            if a.device != "cpu":
                torch.cuda.synchronize()
            clock = time.thread_time if a.device == "cpu" else time.perf_counter
            t = clock()
            PARADIGMS[a.paradigm](ctx, 0)
            if a.device != "cpu":
                torch.cuda.synchronize()
            times[k].append((clock() - t) / (int(ctx.steps[0]) - steps))
    base = statistics.median(times["cascade", "ingoing"])
    print(f"{a.paradigm}, {a.runs} runs x width {a.width} x depth {a.depth}, batch 100, {a.device} ({'thread CPU' if a.device == 'cpu' else 'wall'} time)")
    for (topo, norm), ts in times.items():
        med = statistics.median(ts)
        label = topo + (f"/{norm}" if topo == "ancre" else "")
        print(f"  {label:16s} {1e3 * med:8.3f} ms/step  x{med / base:.2f}")


if __name__ == "__main__":
    main()
