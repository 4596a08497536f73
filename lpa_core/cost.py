"""What the workflow's training will cost before it starts: estimated GPU-hours per track and per job.

    python -m lpa_core cost [--scale paper] [--gpu h200] [--todo]

The jobs are the workflow's own: the `python -m lpa_core train ...` commands of a Snakemake dry run of the whole
DAG (`--forceall`; `--todo`: only the jobs Snakemake would run now, cached runs left out), each read back into
its TrainConfig, so the estimate follows the config and every scale override. Per job:

  FLOPs   forward FLOPs per example at every depth k, F_k (vision: torch's FlopCounterMode on the model built on
          the meta device, one forward, split per block; language models: PaLM's count per token, 2 x the
          parameters the token passes through + 4 x depth x width x context, the embedding lookup free), times
          3 for a training step (forward + backward), times the depths each paradigm steps per batch:
            simultaneous, deep_supervision, layerskip, layerdrop   L (LayerDrop's dropped blocks counted: an upper bound)
            sequential                                            the mean of 1..L over its stages
            lpa, adaptive_lpa                                     1, 2, ..., L, then L (Adaptive LPA: LPA's, an upper bound)
            lpa_grouped                                           k, 2k, ..., L, then L
          times batches x epochs; plus evaluation (forward only): vision at each evaluated epoch the test set,
          the validation images (val_frac) and 10,000 training images at full depth, language models
          cfg.eval_tokens (twice with a development split); the final every-depth pass.
  time    FLOPs / (peak x MFU): peak = the GPU's dense bf16 rate (GPUS; h200: 790 TFLOP/s, as measured on the
          chip), MFU = what benchmarks/gpu_acceptance.sh measured for that model (results/benchmarks/gpu/mfu.csv,
          Simultaneous, bf16) when committed, else ASSUMED_MFU (the issue's goals: 15% for the image models, 25%
          for the language model), and the source is printed beside each row.

The surface track (width-10 MLPs, bound by per-op overhead, not FLOPs) runs on CPUs: its rows show the CPU-hours
its committed paper-scale runs took (run.json wall_s), not a GPU estimate.
"""
import argparse
import functools
import math
import re
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

GPUS = {"h200": 790e12}  # dense bf16 FLOP/s (issue 14: the H200's measured matmul rate, ~790 TFLOP/s)
ASSUMED_MFU = {"resnet": 0.15, "vit": 0.15, "lm": 0.25}
MFU_CSV = Path("results/benchmarks/gpu/mfu.csv")
TRAIN_CMD = re.compile(r"python -m lpa_core train((?: --[\w-]+ [^\s)'\"]+)+)")
SKIP = {"out", "ckpt_dir", "scale", "parent_pid"}  # the CLI's own options, not TrainConfig keys


def parse_commands(text):
    """[(TrainConfig, out folder)] of every `python -m lpa_core train ...` command in text (a dry run's output)."""
    from lpa_core.config import TrainConfig

    jobs = []
    for m in TRAIN_CMD.finditer(text):
        tok, keys, out = shlex.split(m.group(1)), [], ""
        for k, v in zip(tok[::2], tok[1::2]):
            key = k.lstrip("-").replace("-", "_")
            if key == "out":
                out = v
            elif key not in SKIP:
                keys += [k, v]
        jobs.append((TrainConfig.from_dict(TrainConfig.parse_options(keys)), out))
    return jobs


def dag_commands(scale, todo=False):
    """The dry-run output of the workflow at `scale` (all jobs, or only those to run now with todo)."""
    cmd = ["snakemake", "-n", "-p", "--nolock", "--config", f"scale={scale}"] + ([] if todo else ["--forceall"])
    exe = Path(sys.executable).with_name("snakemake")
    if exe.exists():
        cmd[0] = str(exe)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise ValueError("cost: needs snakemake to read the workflow's jobs (pip install snakemake)") from None
    if r.returncode:
        raise ValueError(f"cost: the dry run failed: {(r.stderr or r.stdout).strip().splitlines()[-1]}")
    return r.stdout + r.stderr


@functools.lru_cache(maxsize=None)
def vision_layer_flops(arch, classes, channels, size):
    """Forward FLOPs of one image per layer (stem, blocks 1..L, head), from one meta-device forward."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lpa_core.registry import create_model

    with torch.device("meta"):
        model = create_model(arch, d_in=(channels, size, size), d_out=classes).eval()
        x = torch.zeros(1, channels, size, size)
    with torch.no_grad(), FlopCounterMode(display=False, depth=3) as fc:
        model(x)
    counts = {k: sum(v.values()) for k, v in fc.get_flop_counts().items()}
    name = type(model).__name__
    blocks = [counts.get(f"{name}.blocks.{j}", 0) for j in range(model.depth)]
    head = counts.get(f"{name}.head", 0)
    return (counts["Global"] - sum(blocks) - head, *blocks, head)


def lm_layer_flops(model, seq_len):
    """Forward FLOPs of one sequence per layer (stem, blocks 1..L, head) of an LMStack (PaLM, appendix B): per token
    2 x the layer's parameters, plus 4 x width x seq_len per block (attention scores and weighted sum); the
    embedding lookup is free."""
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    width = model.config.hidden_size
    return (0, *(seq_len * (2 * n(b) + 4 * width * seq_len) for b in model.blocks), seq_len * 2 * n(model.head))


def depth_flops(layers):
    """Forward FLOPs at depth k = 1..L (stem + blocks 1..k + head) from the per-layer FLOPs (stem, blocks, head)."""
    return [layers[0] + sum(layers[1:k + 1]) + layers[-1] for k in range(1, len(layers) - 1)]


def vision_depth_flops(arch, classes, channels, size):
    """Forward FLOPs of one image at depth k = 1..L (stem + blocks 1..k + head)."""
    return depth_flops(vision_layer_flops(arch, classes, channels, size))


@functools.lru_cache(maxsize=None)
def lm_named_flops(arch, vocab_size, seq_len):
    """lm_layer_flops of an LM arch built on the meta device."""
    import torch

    from lpa_core.registry import create_model

    with torch.device("meta"):
        model = create_model(arch, d_in=vocab_size, d_out=vocab_size)
    return lm_layer_flops(model, seq_len)


def lm_depth_flops(arch, vocab_size, seq_len):
    """Forward FLOPs of one sequence at depth k = 1..L (stem + blocks 1..k + head)."""
    return depth_flops(lm_named_flops(arch, vocab_size, seq_len))


def step_depths(cfg, L):
    """Depths of the training steps a paradigm takes per batch (an average count for sequential)."""
    from lpa_core.paradigms.lpa import unit_depths

    p = cfg.paradigm
    if p in ("lpa", "adaptive_lpa"):
        return list(range(1, L + 1)) + [L]
    if p == "lpa_grouped":
        return unit_depths(L, cfg.group_size) + [L]
    if p == "sequential":
        return [None]  # the mean over stages, below
    return [L]


def batch_flops(cfg, F):
    """Training FLOPs of one batch of cfg.batch_size examples under cfg.paradigm, from forward FLOPs per example at
    each depth F (forward + backward = 3 x forward at every step the paradigm takes)."""
    depths = step_depths(cfg, len(F))
    forward = sum(F) / len(F) if depths == [None] else sum(F[d - 1] for d in depths)
    return 3 * forward * cfg.batch_size


def layer_flops(cfg):
    """Forward FLOPs per example (an image; a sequence of cfg.seq_len tokens) of cfg's model, per layer (stem,
    blocks 1..L, head)."""
    if cfg.task == "vision":
        from lpa_core.images import DATASETS

        spec = DATASETS[cfg.datasets[0]]
        return vision_layer_flops(cfg.arch, spec.classes, spec.channels, spec.size)
    return lm_named_flops(cfg.arch, cfg.vocab_size, cfg.seq_len)


def equal_flops_epochs(cfg, match="lpa"):
    """Epochs in which cfg.paradigm trains as many FLOPs as paradigm `match` in cfg.epochs, on the same model, data
    and batches (issue 12's equal compute, analytic, >= 1). Every step of these paradigms trains the stem, so by
    lpa_core.task's rule a step at depth d costs 3 F_d - stem per example (F_d = forward FLOPs at depth d);
    Simultaneous matched to LPA: round(E (3 (F_1 + ... + F_L + F_L) - (L + 1) stem) / (3 F_L - stem)). Not for sequential
    (frozen blocks: no weight gradient); LayerDrop's dropped blocks counted (an upper bound)."""
    from dataclasses import replace

    layers = layer_flops(cfg)
    F = depth_flops(layers)
    if "sequential" in (cfg.paradigm, match):
        raise ValueError("equal_flops_epochs: not for sequential (its steps skip the frozen blocks' weight gradients)")
    per_batch = lambda p: sum(3 * F[d - 1] - layers[0] for d in step_depths(replace(cfg, paradigm=p), len(F)))  # noqa: E731
    return max(1, round(cfg.epochs * per_batch(match) / per_batch(cfg.paradigm)))


def job_flops(cfg):
    """(training + evaluation FLOPs of one job, model family 'resnet' | 'vit' | 'lm')."""
    F = depth_flops(layer_flops(cfg))
    if cfg.task == "vision":
        from lpa_core.images import DATASETS, n_held
        from lpa_core.vision import TRAIN_EVAL, family

        spec = DATASETS[cfg.datasets[0]]
        n_train = min(cfg.train_subset or spec.n_train, spec.n_train)
        n_val = n_held(n_train, cfg.val_frac)
        n_train, n_test = n_train - n_val, min(cfg.test_subset or spec.n_test, spec.n_test)
        per_eval = n_test + min(n_train, TRAIN_EVAL) + n_val
        batches, fam = n_train // cfg.batch_size, family(cfg.arch)
        final = n_test
    else:
        if not cfg.epoch_batches:
            raise ValueError(f"cost: {cfg.arch} job with epoch_batches 0 (a pass over the corpus): its size is not known before loading it")
        batches, fam = cfg.epoch_batches, "lm"
        per_eval = final = max(1, cfg.eval_tokens // cfg.seq_len)
        per_eval *= 1 + bool(cfg.val_frac)  # the development split too (at most eval_tokens)
    evals = math.ceil(cfg.epochs / cfg.eval_every) + 1
    return batch_flops(cfg, F) * batches * cfg.epochs + F[-1] * (per_eval * evals + final), fam


def measured_mfu(path=MFU_CSV):
    """{arch: MFU} of Simultaneous in bf16 from the committed acceptance results (benchmarks/gpu_acceptance.sh)."""
    if not Path(path).is_file():
        return {}
    import pandas as pd

    t = pd.read_csv(path)
    t = t[(t.paradigm == "simultaneous") & (t.precision == "bf16")]
    return dict(zip(t.arch, t.mfu))


def cached_wall_h(out):
    """Hours a committed run took (its run.json wall_s), or None."""
    import json

    p = Path(out) / "run.json"
    try:
        return json.loads(p.read_text())["wall_s"] / 3600
    except (OSError, ValueError, KeyError):
        return None


def estimate(jobs, gpu="h200", mfu_csv=MFU_CSV):
    """Rows (track, exp, arch, paradigm, jobs, PFLOP per job, hours per job, hours, device, source) grouped over
    seeds and datasets, for [(TrainConfig, out)]."""
    if gpu not in GPUS:
        raise ValueError(f"gpu: unknown '{gpu}' (valid: {', '.join(GPUS)})")
    measured = measured_mfu(mfu_csv)
    groups = defaultdict(lambda: [0, 0.0, 0.0, "", ""])
    for cfg, out in jobs:
        key = (cfg.task, cfg.exp, cfg.arch, cfg.paradigm + ("" if cfg.topology == "cascade" else f"/{cfg.topology}"))
        g = groups[key]
        if cfg.task == "surfaces":
            hours, flops, device = cached_wall_h(out), 0.0, "cpu"
            source = "committed run.json wall time" if hours is not None else "no committed run: unknown"
        else:
            flops, fam = job_flops(cfg)
            mfu = measured.get(cfg.arch)
            source = f"MFU {mfu:.0%} measured (gpu_acceptance)" if mfu else f"MFU {ASSUMED_MFU[fam]:.0%} assumed"
            hours, device = flops / (GPUS[gpu] * (mfu or ASSUMED_MFU[fam])) / 3600, gpu
        g[0] += 1
        g[1] += flops
        g[2] += hours or 0.0
        g[3], g[4] = device, source
    return [(*k, n, fl / n / 1e15, h / n, h, dev, src) for k, (n, fl, h, dev, src) in groups.items()]


def render(rows, gpu):
    w = [max([len(h)] + [len(str(r[i])) for r in rows]) + 2 for i, h in enumerate(("track", "experiment", "arch", "paradigm"))]
    head = (f"{'track':<{w[0]}}{'experiment':<{w[1]}}{'arch':<{w[2]}}{'paradigm':<{w[3]}}{'jobs':>5}{'PFLOP/job':>11}"
            f"{'h/job':>9}{'hours':>9}  device  source")
    lines = [head, "-" * len(head)]
    for track, exp, arch, par, n, pf, hj, h, dev, src in sorted(rows):
        lines.append(f"{track:<{w[0]}}{exp:<{w[1]}}{arch:<{w[2]}}{par:<{w[3]}}{n:>5}{pf:>11.2f}{hj:>9.2f}{h:>9.1f}  {dev:<6}  {src}")
    lines.append("-" * len(head))
    totals = defaultdict(lambda: [0, 0.0])
    for r in rows:
        totals[(r[0], r[8])][0] += r[4]
        totals[(r[0], r[8])][1] += r[7]
    for (track, dev), (n, h) in sorted(totals.items()):
        lines.append(f"total {track}: {n} jobs, {h:.1f} {'GPU' if dev != 'cpu' else 'CPU'}-hours ({dev})")
    gpu_h = sum(h for (_, dev), (_, h) in totals.items() if dev != "cpu")
    lines.append(f"total on {gpu}: {gpu_h:.1f} GPU-hours ({gpu_h / 24:.1f} GPU-days; one job per GPU)")
    return "\n".join(lines)


def cost_cmd(args):
    text = Path(args.commands).read_text() if args.commands else dag_commands(args.scale, args.todo)
    jobs = parse_commands(text)
    if not jobs:
        print(f"cost: no training job at scale {args.scale}" + (" left to run" if args.todo else ""))
        return
    print(render(estimate(jobs, args.gpu), args.gpu))


def add_commands(sub):
    c = sub.add_parser("cost", help="estimated GPU-hours of the workflow's training jobs, per track and per job",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--scale", default="paper", help="workflow scale (config/config.yaml scales)")
    c.add_argument("--gpu", default="h200", help=f"GPU whose dense bf16 rate is used ({', '.join(GPUS)})")
    c.add_argument("--todo", action="store_true", help="only the jobs Snakemake would run now (cached runs left out)")
    c.add_argument("--commands", help="read the train commands from this file (a saved dry run) instead of running one")
    c.set_defaults(func=cost_cmd)
