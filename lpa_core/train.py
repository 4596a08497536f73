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
The loop then writes, for a model with a residual topology, coeffs.csv, and last run.json (resolved config,
command, git commit, versions, hardware, start/end, per-run status, and the run's identity and manifest:
lpa_core.runs). Every output is written at the end, each atomically (temp file, then rename), so a killed job
leaves none. Before any work the output and checkpoint folders are checked writable and locked (<dir>/.lock): a
second trainer of the same run stops with one line naming the lock and its holder. Checkpoints go to `ckpt_dir`
every cfg.ckpt_every_s seconds (last.pt, the one before kept as prev.pt); a restarted job resumes from there and
ends with the same numbers as an uninterrupted one. A checkpoint that cannot be read is moved aside with one line
naming it, and the job resumes from prev.pt or starts afresh.
A run whose loss turns non-finite stops updating and is recorded 'diverged'; the job still ends normally.
"""
import contextlib
import fcntl
import gc
import os
import socket
import sys
import time
from pathlib import Path

import torch

from lpa_core import io, runs
from lpa_core.optim import cosine_lr
from lpa_core.paradigms import get_paradigm
from lpa_core.surfaces import SurfaceTask, key_columns, run_keys
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
    the same when it is at its default (so a code update does not throw away a long run's checkpoint), and the
    execution keys (runs.EXECUTION_KEYS: threads, ...) may differ."""
    now, defaults = cfg.to_dict(), type(cfg)().to_dict()
    return set(saved) <= set(now) and all(saved[k] == v if k in saved else v == defaults[k] for k, v in now.items()
                                          if k not in runs.EXECUTION_KEYS)


CKPT_KEYS = ("config", "epoch", "wall_s", "history", "diverged_at", "start")


def load_checkpoint(ckdir, log):
    """The newest readable checkpoint of ckdir (last.pt, else prev.pt, the one before it), or None. One that cannot
    be read or lacks the loop's keys is moved aside (<name>.bad-<time>) with one line naming it; it is never loaded
    any other way than weights_only=True."""
    for path in (ckdir / "last.pt", ckdir / "prev.pt"):
        if not path.is_file():
            continue
        try:
            ck = torch.load(path, weights_only=True)
            if not isinstance(ck, dict) or not all(k in ck for k in CKPT_KEYS):
                raise ValueError("not a complete checkpoint")
            return path, ck
        except Exception as e:  # a truncated zip, random bytes, a partial dict: torch's own text is not shown (it may
            bad = path.with_name(f"{path.name}.bad-{io.now().replace(':', '')}")  # suggest an unsafe load)
            os.replace(path, bad)
            log(f"checkpoint {path}: unreadable or partial ({type(e).__name__}); moved aside to {bad}")
    return None


def save_checkpoint(ckdir, obj):
    """last.pt, atomically, keeping the one before as prev.pt (what a run falls back to if last.pt is damaged)."""
    last = ckdir / "last.pt"
    if last.exists():
        os.replace(last, ckdir / "prev.pt")
    io.save_torch(last, obj)


def preflight(out, ckdir):
    """Before any work: the output and checkpoint folders exist or can be made, and can be written."""
    for key, d in (("out", out), ("ckpt_dir", ckdir)):
        probe = Path(d) / f".write-test{os.getpid()}"
        try:
            Path(d).mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ValueError(f"{key}: cannot write to '{d}' ({e.strerror or e}); choose a writable folder") from None


@contextlib.contextmanager
def run_lock(*dirs):
    """Hold <dir>/.lock (flock) for each folder while the run trains: a second trainer of the same run folder or
    checkpoint stops at once, with one line naming the lock and its holder. The kernel drops a dead holder's lock;
    a finished holder removes the file (a lock taken on a file removed meanwhile counts as held)."""
    with contextlib.ExitStack() as stack:
        for d in dict.fromkeys(Path(d).resolve() for d in dirs):  # one lock where --ckpt-dir is --out
            path = d / ".lock"
            f = stack.enter_context(open(path, "a+"))
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(f.fileno()).st_ino != os.stat(path).st_ino:
                    raise OSError("lock file replaced")
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise ValueError(f"{path}: locked by {holder}, another trainer of this run; wait for it to end or "
                                 f"stop it") from None
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()} since {io.now()}\n")
            f.flush()
            stack.callback(path.unlink, missing_ok=True)  # runs before the file is closed (the lock released)
        yield


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


def train(cfg, out, ckpt_dir=None, log=None, scale="adhoc"):
    """Train cfg's group of runs, write the outputs to `out` (run.json last, lpa_core.runs); returns the per-run
    status list. `scale`: the workflow scale the run belongs to, recorded in run.json."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    ckdir = Path(ckpt_dir or default_ckpt_dir(out))
    made = not out.exists()
    try:
        preflight(out, ckdir)
        with run_lock(out, ckdir):
            return _train(cfg, out, ckdir, log, scale)
    finally:  # a job that ends without its outputs leaves no empty output folder behind
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def _train(cfg, out, ckdir, log, scale):
    torch.set_num_threads(cfg.threads)
    paradigm = get_paradigm(cfg.paradigm)
    ctx = make_task(cfg)
    start, epoch0, wall0, history, diverged_at = io.now(), 0, 0.0, [], [None] * ctx.n_runs
    found = load_checkpoint(ckdir, log)
    if found:
        ckpt, ck = found
        try:
            if not same_config(ck["config"], cfg):
                raise ValueError("it was made with another config")
            ctx.restore(ck)
        except (ValueError, RuntimeError, KeyError, TypeError) as e:
            log(f"[{cfg.exp}/{cfg.paradigm}] starting afresh, not resuming from {ckpt}: {str(e).splitlines()[0]}")
            ctx = make_task(cfg)
        else:
            epoch0, wall0, history, diverged_at, start = ck["epoch"], ck["wall_s"], ck["history"], ck["diverged_at"], ck["start"]
            log(f"[{cfg.exp}/{cfg.paradigm}] resuming from {ckpt} at epoch {epoch0}")
    ctx.log = log  # the one-run tasks' progress lines within an epoch (lpa_core.task)
    gc.collect()
    gc.freeze()  # what exists now (modules, data) lives to the end: the collector stops re-scanning it every few steps
    t0, last_ck = time.perf_counter() - wall0, time.perf_counter()
    log(f"[{cfg.exp}/{cfg.paradigm}] {ctx.describe()}")
    for epoch in range(epoch0, cfg.epochs):
        ctx.epoch = epoch  # a task may move the rate within the epoch (lpa_core.lm: per step)
        lrs = [cosine_lr(b, epoch, cfg.epochs, cfg.warmup_epochs, cfg.final_lr_frac) for b in cfg.run_lrs]  # per run: its own base
        ctx.set_lr(lrs if len(lrs) > 1 else lrs[0])
        paradigm(ctx, epoch)
        wall = time.perf_counter() - t0
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs or ctx.bad.all():
            with ctx.uncounted():
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
            save_checkpoint(ckdir, {**ctx.checkpoint(), "config": cfg.to_dict(), "epoch": epoch + 1, "wall_s": wall,
                                 "history": history, "diverged_at": diverged_at, "start": start})
            last_ck = time.perf_counter()
    return write_outputs(ctx, out, history, diverged_at, start, time.perf_counter() - t0, scale)


def write_outputs(ctx, out, history, diverged_at, start, wall, scale="adhoc"):
    """The task's files and, for a model with a residual topology, coeffs.csv, each atomically; then run.json
    (provenance, per-run status, identity and the manifest of those files: lpa_core.runs.finish_run), last.
    Returns the per-run status list."""
    cfg = ctx.cfg
    status = ["diverged" if d is not None else "ok" for d in diverged_at]
    with ctx.uncounted():
        ctx.write_outputs(out, history, status, diverged_at, wall)
    prov = io.provenance(cfg.device)
    prov["versions"].update(getattr(ctx, "versions", {}))  # the libraries a task builds on (vision: torchvision, timm)
    prov["precision"] = getattr(ctx, "precision", "fp32")  # what ran: bf16 autocast or fp32 (lpa_core.task)
    if hasattr(ctx, "kernel"):  # surfaces: the step's implementation (c, torch or autograd: lpa_core.surfaces)
        prov["kernel"] = ctx.kernel
    if hasattr(ctx.model, "topology"):  # surfaces; the vision stacks keep their library's shortcuts
        io.write_csv(out / "coeffs.csv", key_columns(cfg) + ["topology", "j", "i", "p"],  # shortcut coefficients (NaN: diverged run)
                     [run_keys(cfg, r) + [cfg.topology, j, i, float("nan") if ctx.bad[r] else p] for r, j, i, p in coefficients(ctx.model)])
    info = {"config": cfg.to_dict(), **prov, "start": start, "end": io.now(), "wall_s": round(wall, 3),
            "runs": [dict(zip(["dataset", "seed"], k), status=s, **({"lr": lr} if cfg.lrs or cfg.dataset_lrs else {}))
                     for k, s, lr in zip(cfg.runs, status, cfg.run_lrs)]}
    runs.finish_run(out, info, cfg.task, scale, cfg.exp)
    return status
