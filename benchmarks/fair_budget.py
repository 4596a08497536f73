"""Time budget of the fair track (issue #12) on 2 cores, projected from short runs of the real tune command.

    python benchmarks/fair_budget.py [--scale paper] [--epochs 2] [--cores 2] [--out results/benchmarks/fair_budget.csv]

The jobs are the workflow's own: `snakemake -n -p fair --config scale=SCALE` lists every tune command
(workflow/rules/fair.smk). Jobs that cost the same per epoch (same paradigm, width, depth, data sizes, trials and
seeds: the domain and the epochs do not change the cost of an epoch) form a class; one command per class is run for
`--epochs` epochs (evaluating every epoch) in a temporary folder, and from its trials/ and final/ histories come
  train  seconds per training epoch of each phase (epochs 1..e, the evaluations taken out),
  eval   seconds per evaluation (the last one: run.json's wall_s after the last history row),
  fixed  the rest of the process (start, data, calibration epoch, outputs),
so a job of E epochs evaluating every k takes fixed + sum over phases of E train + ceil(E/k) eval. An equal-compute
job's epochs are LPA's epochs times LPA's steps (FLOPs) per epoch over its own (from the short runs' summaries),
as the tune command sets them. Seconds are CPU seconds (user + system of the process; on a shared machine what an
idle one would take; `--clock wall` for wall time). The jobs are then scheduled on `--cores` single-threaded
workers, longest first, an equal-compute job after the LPA job it matches:
  table1   the tuned Table 1 grid (workload table1, equal epochs; issue target: 30 min on 2 cores)
  compute  the equal-compute runs of workload table1 (steps, flops)
  map      the claims-map workloads other than table1 (issue target with table1's share: 90 min)
  all      every fair job
Results: the table printed, `--out` (CSV: one row per group and one per job class) and a JSON beside it with
provenance and the measured classes.
"""
import argparse
import json
import math
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lpa_core import io  # noqa: E402

COST_KEYS = ("paradigm", "width", "depth", "n_train", "n_val", "n_test", "batch_size", "seeds", "datasets", "grid", "group_size")


def fair_jobs(scale):
    """[(tune folder relative to results/runs/<scale>/fair, {option: value})] of the workflow's fair target, every job
    (--forceall: cached tune folders count too)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-n", "-p", "--forceall", "fair", "--config", f"scale={scale}",
                        "cached_only=false"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode:
        raise SystemExit(f"snakemake -n fair: {r.stderr.strip().splitlines()[-1]}")
    jobs = []
    for cmd in re.findall(r"python -m lpa_core tune (.*?) >", r.stdout):
        tok = shlex.split(cmd)
        opts = {tok[i].lstrip("-").replace("-", "_"): tok[i + 1] for i in range(0, len(tok) - 1, 2) if tok[i].startswith("--")}
        jobs.append((opts["out"].split("/fair/", 1)[1], opts))
    if not jobs:
        raise SystemExit(f"snakemake -n fair --config scale={scale}: no tune job (is the config's fair section there?)")
    return jobs


def measure(opts, epochs, tmp, clock):
    """Short run of one tune command: (fixed, [(train per epoch, eval) per phase], {phase: summary}) in seconds."""
    keep = {k: v for k, v in opts.items() if k not in ("out", "ckpt_dir", "parent_pid", "match", "match_dir", "scale")}
    keep.update(epochs=str(epochs), eval_every="1", threads="1", adaptive_warmup=str(min(int(keep.get("adaptive_warmup", 0)), epochs - 1)))
    out = Path(tmp) / "tune"
    args = [sys.executable, "-m", "lpa_core", "tune", "--out", str(out), "--ckpt-dir", str(Path(tmp) / "ck")]
    args += [x for k, v in keep.items() for x in (f"--{k.replace('_', '-') if k in ('trials', 'span', 'tune_seed') else k}", v)]
    for attempt in (1, 2):  # once more after a failure (a shared machine), from scratch, then its last lines
        for sub in ("tune", "ck"):
            shutil.rmtree(Path(tmp) / sub, ignore_errors=True)
        t, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if not r.returncode:
            break
        print(f"tune failed (attempt {attempt}): {(r.stderr or r.stdout).strip().splitlines()[-1:]}", file=sys.stderr)
    else:
        raise SystemExit(f"{' '.join(args)}: exit {r.returncode}")
    wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    ratio = cpu / wall if clock == "cpu" else 1.0  # the process's CPU per wall second: contention taken out
    phases, summaries, loops = [], {}, 0.0
    for phase in ("trials", "final"):
        h = pd.read_csv(out / phase / "history.csv")
        w = h.groupby("epoch").wall_s.first().sort_index()
        total = json.loads((out / phase / "run.json").read_text())["wall_s"]
        ev = total - w.iloc[-1]  # the last evaluation
        train = (w.iloc[-1] - (len(w) - 1) * ev) / len(w)  # the evaluations before it taken out
        phases.append((max(train, 0.0) * ratio, ev * ratio))
        summaries[phase] = pd.read_csv(out / phase / "summary.csv")
        loops += total
    return (wall - loops) * ratio, phases, summaries


def per_epoch(summary, what, epochs):
    return float(summary[summary.status == "ok"][what].mean()) / epochs


def schedule(durations, deps, cores):
    """Makespan of jobs on `cores` workers, longest eligible first; a job starts after the jobs in deps[job]."""
    free, done, left = [0.0] * cores, {}, dict(durations)
    while left:
        c = free.index(min(free))
        ready = [j for j in left if all(d in done for d in deps.get(j, ()))]
        ready = [j for j in ready if max([done[d] for d in deps.get(j, ())], default=0) <= free[c]] or ready
        j = max(ready, key=lambda j: left[j])
        start = max(free[c], max([done[d] for d in deps.get(j, ())], default=0))
        done[j] = free[c] = start + left.pop(j)
    return max(done.values(), default=0.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="paper")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each short run (>= 2)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--out", default="results/benchmarks/fair_budget.csv")
    a = p.parse_args()
    jobs = fair_jobs(a.scale)
    classes = {}
    for name, opts in jobs:
        classes.setdefault(tuple(opts.get(k) for k in COST_KEYS) + (opts["trials"],), (name, opts))
    measured = {}
    for key, (name, opts) in classes.items():
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            measured[key] = measure(opts, a.epochs, tmp, a.clock)
            print(f"measured {name} ({a.epochs} epochs): {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    cost_of = lambda opts: measured[tuple(opts.get(k) for k in COST_KEYS) + (opts["trials"],)]
    by_name = dict(jobs)
    durations, deps, epochs_of = {}, {}, {}
    for name, opts in jobs:
        fixed, phases, summ = cost_of(opts)
        E = int(opts["epochs"])
        if opts.get("match"):  # LPA's epochs x LPA's cost per epoch / this paradigm's
            lpa = name.split("/")[0] + "/epochs/lpa"
            lpa_opts = by_name[lpa]
            what = opts["match"]
            E = max(1, round(int(lpa_opts["epochs"]) * per_epoch(cost_of(lpa_opts)[2]["final"], what, a.epochs)
                             / per_epoch(summ["final"], what, a.epochs)))
            deps[name] = [lpa]
        k = int(opts["eval_every"])
        durations[name] = fixed + sum(E * tr + math.ceil(E / k) * ev for tr, ev in phases)
        epochs_of[name] = E
    groups = {"table1": [n for n in durations if n.startswith("table1/epochs/")],
              "compute": [n for n in durations if n.startswith("table1/") and not n.startswith("table1/epochs/")],
              "map": [n for n in durations if not n.startswith("table1/")], "all": list(durations)}
    rows = []
    for g, names in groups.items():
        sub = {n: durations[n] for n in names}
        sub_deps = {n: [d for d in deps.get(n, []) if d in sub] for n in sub}
        rows.append({"group": g, "jobs": len(names), "cpu_s": round(sum(sub.values()), 1),
                     f"wall_s_{a.cores}cores": round(schedule(sub, sub_deps, a.cores), 1), "epochs": "",
                     "job": ""})
    for n in sorted(durations):
        rows.append({"group": "job", "jobs": 1, "cpu_s": round(durations[n], 1), f"wall_s_{a.cores}cores": "",
                     "epochs": epochs_of[n], "job": n})
    df = pd.DataFrame(rows)
    print(f"fair track at scale {a.scale}: projected from {len(classes)} short tune runs of {a.epochs} epochs "
          f"({a.clock} seconds), {a.cores} cores")
    for r in rows[:len(groups)]:
        print(f"  {r['group']:8s} {r['jobs']:3d} jobs  {r['cpu_s'] / 60:8.1f} core-min  "
              f"{r[f'wall_s_{a.cores}cores'] / 60:8.1f} min on {a.cores} cores")
    out = ROOT / a.out
    out.parent.mkdir(parents=True, exist_ok=True)
    io.write_csv(out, list(df.columns), df.values.tolist())
    io.write_json(out.with_suffix(".json"), {
        **io.provenance(), "scale": a.scale, "short_epochs": a.epochs, "clock": a.clock, "cores": a.cores,
        "load_avg": os.getloadavg(), "command": " ".join(sys.argv),
        "classes": [{"example": name, "fixed_s": m[0], "phases_train_eval_s": m[1]}
                    for (name, _), m in zip(classes.values(), measured.values())]})


if __name__ == "__main__":
    main()
