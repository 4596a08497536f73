"""One training job, one loop for every task: epochs, the LR schedule, checkpoint/resume, divergence, progress
lines with an ETA, atomic outputs and run.json provenance are here; what a task is (data, loss, evaluation,
history rows, its result files) is behind a small interface, chosen by cfg.arch:

  surfaces  lpa_core.surfaces.SurfaceTask: a group of runs (datasets x seeds) as one vectorised residual MLP;
            layerwise.csv, history.csv, summary.csv, grid.npz
  vision    lpa_core.vision.VisionTask: one run (one dataset, one seed) of a ResNet or ViT on images;
            layerwise.csv, history.csv, summary.csv, embeddings.npz, inference.csv
  lm        lpa_core.lm.LMTask: one run of a transformers decoder (Llama, Qwen2) on text (lpa_core.text);
            layerwise.csv, history.csv, summary.csv, samples.txt

A task has what a paradigm uses (lpa_core.paradigms: cfg, n_runs, model, state, batches, loss, loss_at, step)
and what the loop uses: steps, samples, bad (per-run tensors [R]), describe() (the job's first log line),
set_lr(lr), history(epoch, wall) -> (tidy rows, progress text), checkpoint() / restore(ck) (tensors and plain
values only: checkpoints load with weights_only=True) and write_outputs(out, history, status, diverged_at, wall).
The loop then writes run.json (resolved config, command, git commit, versions, hardware, start/end, per-run
status) and, for a model with a residual topology, coeffs.csv. Every output is written at the end, each
atomically (temp file, then rename), so a killed job leaves none. Checkpoints go to `ckpt_dir` every
cfg.ckpt_every_s seconds; a restarted job resumes from there and ends with the same numbers as an uninterrupted one.
A run whose loss turns non-finite stops updating and is recorded 'diverged'; the job still ends normally.
"""
import os
import sys
import time
from pathlib import Path

import torch

from lpa_core import io, runs
from lpa_core.optim import cosine_lr
from lpa_core.paradigms import get_paradigm
from lpa_core.surfaces import KEYS, SurfaceTask, run_keys
from lpa_core.topology import coefficients

Context = SurfaceTask  # the surface task under its first name (tests and older code import it from here)


def make_task(cfg):
    """The task of cfg.arch: image classification for a vision arch (lpa_core.vision, imported only then: it
    brings torchvision and timm), else the surfaces (lpa_core.surfaces)."""
    if cfg.task == "vision":
        from lpa_core.vision import VisionTask

        return VisionTask(cfg)
    if cfg.task == "lm":
        from lpa_core.lm import LMTask

        return LMTask(cfg)
    return Context(cfg)


def same_config(saved, cfg):
    """A checkpoint resumes only under the config that made it; a key added to TrainConfig since then counts as
    the same when it is at its default (so a code update does not throw away a long run's checkpoint)."""
    now, defaults = cfg.to_dict(), type(cfg)().to_dict()
    return set(saved) <= set(now) and all(saved[k] == v if k in saved else v == defaults[k] for k, v in now.items())


def default_ckpt_dir(out):
    """checkpoints/<out>, never inside `out`: an absolute out (or one with '..') is taken relative to the working
    directory when it lies inside it (so 'results/x' and '$PWD/results/x' share a checkpoint), else to its anchor."""
    out = Path(out)
    if out.is_absolute() or ".." in out.parts:
        out = Path(os.path.abspath(out))
        try:
            out = out.relative_to(os.getcwd())
        except ValueError:
            out = out.relative_to(out.anchor)
    return Path("checkpoints") / out


def train(cfg, out, ckpt_dir=None, log=None):
    """Train cfg's group of runs, write the outputs to `out`; returns the per-run status list."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    ckpt = Path(ckpt_dir or default_ckpt_dir(out)) / "last.pt"
    torch.set_num_threads(cfg.threads)
    paradigm = get_paradigm(cfg.paradigm)
    ctx = make_task(cfg)
    start, epoch0, wall0, history, diverged_at = io.now(), 0, 0.0, [], [None] * ctx.n_runs
    if ckpt.exists():
        ck = torch.load(ckpt, weights_only=True)
        try:
            if not same_config(ck["config"], cfg):
                raise ValueError("it was made with another config")
            ctx.restore(ck)
        except (ValueError, RuntimeError, KeyError) as e:
            log(f"[{cfg.exp}/{cfg.paradigm}] starting afresh, not resuming from {ckpt}: {str(e).splitlines()[0]}")
            ctx = make_task(cfg)
        else:
            epoch0, wall0, history, diverged_at, start = ck["epoch"], ck["wall_s"], ck["history"], ck["diverged_at"], ck["start"]
            log(f"[{cfg.exp}/{cfg.paradigm}] resuming from {ckpt} at epoch {epoch0}")
    ctx.log = log  # the one-run tasks' progress lines within an epoch (lpa_core.task)
    t0, last_ck = time.perf_counter() - wall0, time.perf_counter()
    log(f"[{cfg.exp}/{cfg.paradigm}] {ctx.describe()}")
    for epoch in range(epoch0, cfg.epochs):
        ctx.set_lr(cosine_lr(cfg.lr, epoch, cfg.epochs, cfg.warmup_epochs, cfg.final_lr_frac))
        paradigm(ctx, epoch)
        wall = time.perf_counter() - t0
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs or ctx.bad.all():
            rows, progress = ctx.history(epoch + 1, wall)  # also marks runs whose full-depth error is non-finite
            history += rows
            eta = wall / (epoch + 1 - epoch0) * (cfg.epochs - epoch - 1) if epoch + 1 > epoch0 else 0
            log(f"[{cfg.exp}/{cfg.paradigm}] epoch {epoch + 1}/{cfg.epochs}  {progress}  {wall:.0f}s  eta {eta:.0f}s")
        for r in range(ctx.n_runs):
            if ctx.bad[r] and diverged_at[r] is None:
                diverged_at[r] = epoch + 1
                log(f"[{cfg.exp}/{cfg.paradigm}] run {cfg.runs[r]} diverged in epoch {epoch + 1}")
        if ctx.bad.all():
            log(f"[{cfg.exp}/{cfg.paradigm}] every run diverged; stopping")
            break
        if time.perf_counter() - last_ck >= cfg.ckpt_every_s or epoch + 1 == cfg.epochs:
            io.save_torch(ckpt, {**ctx.checkpoint(), "config": cfg.to_dict(), "epoch": epoch + 1, "wall_s": wall,
                                 "history": history, "diverged_at": diverged_at, "start": start})
            last_ck = time.perf_counter()
    return write_outputs(ctx, out, history, diverged_at, start, time.perf_counter() - t0)


def write_outputs(ctx, out, history, diverged_at, start, wall):
    """The task's files, then run.json (provenance, per-run status) and, for a model with a residual topology,
    coeffs.csv; each atomically. Returns the per-run status list."""
    cfg = ctx.cfg
    status = ["diverged" if d is not None else "ok" for d in diverged_at]
    ctx.write_outputs(out, history, status, diverged_at, wall)
    prov = io.provenance(cfg.device)
    prov["versions"].update(getattr(ctx, "versions", {}))  # the libraries a task builds on (vision: torchvision, timm)
    if hasattr(ctx.model, "topology"):  # surfaces; the vision stacks keep their library's shortcuts
        io.write_csv(out / "coeffs.csv", KEYS + ["topology", "j", "i", "p"],  # shortcut coefficients (NaN: diverged run)
                     [run_keys(cfg, r) + [cfg.topology, j, i, float("nan") if ctx.bad[r] else p] for r, j, i, p in coefficients(ctx.model)])
    runs.finish_run(out, {"config": cfg.to_dict(), **prov, "start": start, "end": io.now(), "wall_s": round(wall, 3),
                          "runs": [dict(zip(["dataset", "seed"], k), status=s) for k, s in zip(cfg.runs, status)]},
                    cfg.task, "adhoc", cfg.exp)  # run.json last: identity and the manifest of the files above
    return status
