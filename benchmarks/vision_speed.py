"""Training speed of the vision paradigms, and LPA's per-batch cost against Simultaneous beside the theory.

    python benchmarks/vision_speed.py                       # CPU: the quick members (resnet10_w16, resnet18_w16, vit6_d64)
    python benchmarks/vision_speed.py --device cuda --archs resnet18,vit12,vit24 --batch 128 --batches 20
    python benchmarks/vision_speed.py --device cpu --precision bf16 ...   # the bf16 autocast path on a CPU

Per model and paradigm it runs one epoch of the real paradigm (lpa_core.paradigms, through lpa_core.vision's
VisionTask: augmentation, torch.optim steps, everything a training job does) over `--batches` batches of
Fashion-MNIST (offline) after one warm-up step, and reports training images/s (training images of the epoch /
seconds; an LPA epoch is Algorithm 1's: L + 1 steps per batch) and the per-batch cost relative to Simultaneous.
Beside it, the theoretical ratio for LPA (and its unit-of-k variant), from forward FLOPs to each depth k (torch's
FlopCounterMode on one image, F_k):  sum_k F_k / F_L + 1  (the progressive steps at depths 1..L, then the
full-depth step; backward costs a fixed multiple of forward, so it cancels): about 5.6x for ResNet-18, 7.5x for
ViT-12 and 13.5x for ViT-24. The same ratio from lpa_core.vision.depth_costs' measured latencies is shown too.
Adaptive LPA is timed after its warm-up (its adaptive epoch; plain LPA before). Model FLOP utilisation: the
training FLOPs of the timed epoch (lpa_core.cost.batch_flops: 3 x forward FLOPs at every depth the paradigm
steps; Adaptive LPA counted as LPA, an upper bound) per second, over --peak-tflops (default on CUDA: 790, the
H200's measured dense bf16 rate; none on a CPU). Fashion-MNIST from --data-dir (or Debian's copy). Results: a CSV
with a JSON provenance sidecar (lpa_core.io).
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
from lpa_core.cost import GPUS, batch_flops, vision_depth_flops  # noqa: E402
from lpa_core.paradigms import get_paradigm  # noqa: E402
from lpa_core.paradigms.lpa import unit_depths  # noqa: E402
from lpa_core.vision import RECIPES, VisionTask, depth_costs, family  # noqa: E402

from lpa_core.registry import PARADIGMS  # noqa: E402  (every name, a plugin's too)


def ratio(costs, depths):
    """Per-batch cost of progressive steps at `depths` plus the full-depth step, over one full-depth step."""
    return (sum(costs[d - 1] for d in depths) + costs[-1]) / costs[-1]


def time_epoch(arch, paradigm, device, batch, batches, threads, group_size, data_dir="data", precision="auto"):
    fam = RECIPES[family(arch)]
    cfg = TrainConfig(exp="bench", arch=arch, datasets=("fashion_mnist",), seeds=(0,), paradigm=paradigm, device=device,
                      batch_size=batch, train_subset=batch * batches, test_subset=batch, n_embed=0, epochs=2,
                      adaptive_warmup=1, lr=fam["lr"] * 0.1, weight_decay=fam["weight_decay"], group_size=group_size,
                      threads=threads, data_dir=data_dir, precision=precision)
    torch.set_num_threads(threads)
    task = VisionTask(cfg)
    x, y = next(iter(task.batches()))
    task.step(task.loss(x, y), task.model.params())  # warm-up (allocator, cuDNN autotune)
    epoch = 1 if paradigm == "adaptive_lpa" else 0  # adaptive: its adaptive epoch (after N_pre = 1)
    run = get_paradigm(paradigm)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    steps0 = int(task.steps[0])
    run(task, epoch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    sec = time.perf_counter() - t
    return sec, int(task.steps[0]) - steps0, task


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="resnet10_w16,resnet18_w16,vit6_d64",
                   help="comma-separated (resnet18, resnet34, vit12, vit24 on a GPU)")
    p.add_argument("--paradigms", default=",".join(PARADIGMS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=4, help="batches in the timed epoch")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--group-size", type=int, default=2, help="lpa_grouped unit size")
    p.add_argument("--data-dir", default="data", help="Fashion-MNIST: <data-dir>/FashionMNIST/raw (else Debian's copy)")
    p.add_argument("--precision", default="auto", help="auto (bf16 on CUDA), bf16 (any device) or fp32")
    p.add_argument("--peak-tflops", type=float, help="the device's dense FLOP/s for MFU (default: 790 on CUDA, none on a CPU)")
    p.add_argument("--out", default="results/benchmarks/vision_speed.csv")
    a = p.parse_args()
    peak = a.peak_tflops * 1e12 if a.peak_tflops else GPUS["h200"] if a.device.startswith("cuda") else None
    rows = []
    head = ["arch", "n_blocks", "paradigm", "device", "precision", "batch", "batches", "steps", "seconds", "images_per_s",
            "ms_per_batch", "cost_vs_simultaneous", "theory_flops_vs_simultaneous", "theory_latency_vs_simultaneous",
            "model_tflops_per_s", "mfu"]
    print(" ".join(f"{h:>14}" for h in head[:3] + head[7:]))
    for arch in a.archs.split(","):
        flops = vision_depth_flops(arch, 10, 1, 32)
        L = len(flops)
        theory = {"simultaneous": 1.0, "lpa": ratio(flops, range(1, L + 1)), "lpa_grouped": ratio(flops, unit_depths(L, a.group_size))}
        base, lat = None, None
        for par in a.paradigms.split(","):
            sec, steps, task = time_epoch(arch, par, a.device, a.batch, a.batches, a.threads, a.group_size, a.data_dir, a.precision)
            if lat is None:
                x, _, _ = task.data.sample(a.batch)
                costs = [ms for _, _, ms in depth_costs(task.model, task._input(x))]
                lat = {"simultaneous": 1.0, "lpa": ratio(costs, range(1, L + 1)),
                       "lpa_grouped": ratio(costs, unit_depths(L, a.group_size))}
            per_batch = sec / a.batches
            if par == "simultaneous":
                base = per_batch
            achieved = batch_flops(task.cfg, flops) * a.batches / sec
            row = [arch, L, par, io.hardware(a.device), task.precision, a.batch, a.batches, steps, round(sec, 4),
                   round(a.batch * a.batches / sec, 1), round(1000 * per_batch, 2),
                   round(per_batch / base, 3) if base else "", round(theory[par], 3) if par in theory else "",
                   round(lat[par], 3) if par in lat else "", round(achieved / 1e12, 3),
                   round(achieved / peak, 4) if peak else ""]
            rows.append(row)
            print(" ".join(f"{str(v):>14}" for v in row[:3] + row[7:]), flush=True)
    io.write_csv(a.out, head, rows)
    io.write_json(Path(a.out).with_suffix(".json"), {**io.provenance(a.device), "args": vars(a),
                                                     "torch_threads": a.threads, "peak_flops": peak})
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
