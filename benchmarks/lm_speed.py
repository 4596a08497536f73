"""Training speed of the paradigms on a language model, and LPA's per-batch cost against end-to-end (Simultaneous)
beside the theory.

    python benchmarks/lm_speed.py                     # CPU: lm_tiny on the offline pydoc text (seconds)
    python benchmarks/lm_speed.py --device cuda --arch llama_60m --batch 64 --seq-len 256 --batches 20

Per paradigm it runs one epoch of the real paradigm (lpa_core.paradigms through lpa_core.lm's LMTask: the same
batches, torch.optim steps and bf16 autocast on CUDA as a training job) over `--batches` batches after one warm-up
step, and reports training tokens/s (tokens of the epoch's batches / seconds; an LPA epoch is Algorithm 1's: L + 1
steps per batch) and the per-batch cost relative to Simultaneous. Beside it, two theoretical ratios for LPA:
  blocks  (L+1)/2 + 1 block passes per batch against 1 (the progressive steps at depths 1..L cost sum_k k/L of a
          full pass, then the full-depth step), as the issue states it: it counts decoder layers only;
  flops   sum_k F_k / F_L + 1 from forward FLOPs F_k of the model truncated to k layers (torch's FlopCounterMode),
          which also counts the embedding, final norm and LM head that every step pays (backward costs a fixed
          multiple of forward, so it cancels). A vocabulary-heavy small model is closer to L + 1 than to (L+1)/2 + 1.
The goal on a GPU (as for the vision track): measured LPA cost within 1.15x of the flops ratio (column
cost_over_theory). Adaptive LPA is timed in its adaptive epoch (after one warm-up epoch of plain LPA).
Model FLOP utilisation (mfu): the epoch's training FLOPs by PaLM's count (lpa_core.cost.lm_depth_flops and
batch_flops: 6 x parameters + attention per token at every depth the paradigm steps; Adaptive LPA counted as LPA)
per second, over --peak-tflops (default on CUDA: 790, the H200's measured dense bf16 rate; none on a CPU); the
goal for llama_60m in bf16 is 25%. Results: results/benchmarks/lm_speed.csv and a JSON provenance sidecar
(lpa_core.io).
"""
import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lpa_core import io  # noqa: E402
from lpa_core.config import TrainConfig  # noqa: E402
from lpa_core.cost import GPUS, batch_flops, lm_depth_flops  # noqa: E402
from lpa_core.lm import LMTask  # noqa: E402
from lpa_core.paradigms import get_paradigm  # noqa: E402
from lpa_core.registry import PARADIGMS  # noqa: E402
from lpa_core.paradigms.lpa import unit_depths  # noqa: E402


def flops_per_depth(model, x):
    """Forward FLOPs of the batch x through the model truncated to k layers, k = 1..L."""
    from torch.utils.flop_counter import FlopCounterMode

    out = []
    for k in range(1, model.depth + 1):
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x, k)
        out.append(fc.get_total_flops())
    return out


def ratio(costs, depths):
    """Per-batch cost of progressive steps at `depths` plus the full-depth step, over one full-depth step."""
    return (sum(costs[d - 1] for d in depths) + costs[-1]) / costs[-1]


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_epoch(a, paradigm):
    cfg = TrainConfig(exp="bench", arch=a.arch, datasets=(a.corpus,), seeds=(0,), paradigm=paradigm, device=a.device,
                      batch_size=a.batch, seq_len=a.seq_len, vocab_size=a.vocab_size, epoch_batches=a.batches, epochs=2,
                      adaptive_warmup=1, lr=1e-3, group_size=a.group_size, threads=a.threads, data_dir=a.data_dir,
                      precision=a.precision)
    torch.set_num_threads(a.threads)
    task = LMTask(cfg)
    x, y = next(iter(task.batches()))
    task.step(task.loss(x, y), task.model.params())  # warm-up (allocator, kernels)
    epoch = 1 if paradigm == "adaptive_lpa" else 0
    run = get_paradigm(paradigm)
    sync(a.device)
    t, steps0 = time.perf_counter(), int(task.steps[0])
    run(task, epoch)
    sync(a.device)
    return time.perf_counter() - t, int(task.steps[0]) - steps0, task, x


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="lm_tiny")
    p.add_argument("--corpus", default="pydoc")
    p.add_argument("--paradigms", default=",".join(PARADIGMS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--batches", type=int, default=8, help="batches in the timed epoch")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--group-size", type=int, default=2, help="lpa_grouped unit size")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--precision", default="auto", help="auto (bf16 on CUDA), bf16 (any device) or fp32")
    p.add_argument("--peak-tflops", type=float, help="the device's dense FLOP/s for MFU (default: 790 on CUDA, none on a CPU)")
    p.add_argument("--out", default="results/benchmarks/lm_speed.csv")
    a = p.parse_args()
    peak = a.peak_tflops * 1e12 if a.peak_tflops else GPUS["h200"] if a.device.startswith("cuda") else None
    head = ["arch", "n_blocks", "paradigm", "device", "precision", "batch", "seq_len", "batches", "steps", "seconds",
            "tokens_per_s", "ms_per_batch", "cost_vs_simultaneous", "theory_blocks", "theory_flops", "cost_over_theory",
            "model_tflops_per_s", "mfu"]
    rows, base, theory = [], None, None
    print(" ".join(f"{h:>12}" for h in head[2:3] + head[8:]))
    for par in a.paradigms.split(","):
        sec, steps, task, x = time_epoch(a, par)
        L = task.model.depth
        if theory is None:
            flops = flops_per_depth(task.model, x)
            theory = {"simultaneous": (1.0, 1.0), "lpa": ((L + 1) / 2 + 1, ratio(flops, range(1, L + 1))),
                      "lpa_grouped": (ratio(list(range(1, L + 1)), unit_depths(L, a.group_size)),
                                      ratio(flops, unit_depths(L, a.group_size)))}
        per_batch = sec / a.batches
        base = per_batch if par == "simultaneous" else base
        cost = per_batch / base if base else None
        tb, tf = theory.get(par, ("", ""))
        achieved = batch_flops(task.cfg, lm_depth_flops(a.arch, task.data.tok.get_vocab_size(), a.seq_len)) * a.batches / sec
        row = [a.arch, L, par, io.hardware(a.device), task.precision, a.batch, a.seq_len, a.batches, steps,
               round(sec, 4), round(a.batch * a.seq_len * a.batches / sec, 1), round(1000 * per_batch, 2),
               round(cost, 3) if cost else "", round(tb, 3) if tb != "" else "", round(tf, 3) if tf != "" else "",
               round(cost / tf, 3) if cost and tf != "" else "", round(achieved / 1e12, 3), round(achieved / peak, 4) if peak else ""]
        rows.append(row)
        print(" ".join(f"{str(v):>12}" for v in row[2:3] + row[8:]), flush=True)
    io.write_csv(a.out, head, rows)
    io.write_json(Path(a.out).with_suffix(".json"), {**io.provenance(a.device), "args": vars(a), "torch_threads": a.threads,
                                                     "peak_flops": peak})
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
