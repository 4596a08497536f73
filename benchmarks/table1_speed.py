"""Speed of the tiny-model track: today's code against the base commit's, and against one run per process, side by side.

    python benchmarks/table1_speed.py [--epochs 2] [--repeats 1] [--base 1e383d4] [--profile] [--out results/benchmarks/table1_speed.csv]

For each paradigm of config/config.yaml's Table 1, interleaved in one run (so a shared machine's load hits all
alike), it times
  before  the vectorised job (every surface x seed as one model, one process, one thread) on the code of the
          `--base` commit (extracted with `git archive` into a temporary folder; `--base ''` skips it),
  after   the same job on this checkout's code,
  alone   `--singles` single runs (one surface, one seed) of this checkout's code, each in its own process as a
          one-run-per-process workflow would start it,
each over `--epochs` epochs of the scale's budget with its full data, projected to the budget's epochs (the
process's fixed cost once, plus the loop's time per timed epoch times the epochs), in CPU seconds (`--clock cpu`,
the default: robust to a shared machine's load; on an idle machine the same as wall time) or wall seconds. It prints
and writes per-paradigm seconds, the speedup after/before, the per-run speedup of the vectorised job over one run
alone with the check "vectorised per run <= 1/10 of one run alone", whether the vectorised job's layerwise.csv
after equals the one before (the same config on both codes: 'identical' or the largest relative difference), and the full grid (every paradigm x surface x
seed) packed longest-first onto `--cores` cores (default 2, the target machine). Results: `--out` (CSV) and a
JSON beside it with provenance and the profile of one step per paradigm (benchmarks/profile_step.py, before and
after) when `--profile` is given.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lpa_core import io  # noqa: E402


def timed_train(code, opts, tmp, epochs_full, clock="cpu"):
    """Projected seconds of `python -m lpa_core train` (the lpa_core in folder `code`) with these options at
    `epochs_full` epochs: the process's fixed cost (start, imports, data, outputs) once, plus the training loop's
    time per timed epoch times epochs_full. The loop's share of the process is run.json's wall_s over the process's
    wall time; clock 'cpu' counts the process's CPU time (user + system: on a shared machine, what an idle one would
    take), 'wall' its wall time."""
    args = [sys.executable, "-m", "lpa_core", "train", "--out", str(tmp / "out"), "--ckpt-dir", str(tmp / "ck"),
            "--threads", "1"] + [x for k, v in opts.items() for x in (f"--{k}", ",".join(map(str, v)) if isinstance(v, list) else str(v))]
    env = {**os.environ, "PYTHONPATH": str(code)}
    t, r = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, check=True, cwd=code, capture_output=True, env=env)
    wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
    total = wall if clock == "wall" else r1.ru_utime + r1.ru_stime - r.ru_utime - r.ru_stime
    loop = total * json.loads((tmp / "out/run.json").read_text())["wall_s"] / wall
    return total - loop + loop / opts["epochs"] * epochs_full


def same_numbers(a, b):
    """'identical', or the largest relative difference, between two jobs' layerwise.csv values ('-': no before)."""
    if not (a / "out/layerwise.csv").exists():
        return "-"
    x, y = (pd.read_csv(f / "out/layerwise.csv") for f in (a, b))
    if not x.drop(columns="value").equals(y.drop(columns="value")):
        return "rows differ"
    if np.array_equal(x.value.values, y.value.values, equal_nan=True):
        return "identical"
    return f"max rel diff {np.nanmax(np.abs(x.value - y.value) / np.abs(x.value)):.1e}"


def pack(durations, cores):
    """Makespan of jobs packed longest-first onto `cores` workers."""
    load = [0.0] * cores
    for d in sorted(durations, reverse=True):
        load[load.index(min(load))] += d
    return max(load)


def base_tree(commit, dest):
    """The base commit's lpa_core (git archive) in dest; None when git or the commit is not there."""
    try:
        arch = subprocess.run(["git", "archive", commit, "lpa_core"], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"--base {commit}: not available ({e}); timing this checkout only", file=sys.stderr)
        return None
    return dest


def profile(code, batches):
    """benchmarks/profile_step.py's summary lines for the lpa_core in `code`."""
    env = {**os.environ, "LPA_CODE": str(code)}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks/profile_step.py"), "--batches", str(batches), "--repeats", "5"],
                         cwd=ROOT, check=True, capture_output=True, text=True, env=env)
    return [line for line in res.stdout.splitlines() if "ms/batch" in line]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2, help="epochs timed per job (the loop's time scales linearly)")
    p.add_argument("--scale", default="paper")
    p.add_argument("--base", default="1e383d4", help="the commit whose code is 'before' ('' = none)")
    p.add_argument("--singles", type=int, default=2, help="single runs timed per paradigm")
    p.add_argument("--repeats", type=int, default=1, help="before/after timings per paradigm, interleaved; the fastest counts")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="what a job's time is (see timed_train)")
    p.add_argument("--cores", type=int, default=2, help="cores the projected grid is packed onto")
    p.add_argument("--paradigms", default="", help="comma-separated subset (default: Table 1's)")
    p.add_argument("--profile", action="store_true", help="also profile one step per paradigm, before and after")
    p.add_argument("--out", default="results/benchmarks/table1_speed.csv")
    a = p.parse_args()
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    exp = cfg["table1"]
    over = cfg["scales"][a.scale].get("table1", {})
    train = {**exp["train"], **over.get("train", {})}
    seeds = over.get("seeds", exp["seeds"])
    epochs_full = train["epochs"]
    train.update(epochs=a.epochs, eval_every=a.epochs, adaptive_warmup=min(train.get("adaptive_warmup", 10), a.epochs - 1))
    paradigms = a.paradigms.split(",") if a.paradigms else exp["paradigms"]
    n_runs = len(exp["datasets"]) * len(seeds)
    rows, jobs = [], {"before": [], "after": [], "alone": []}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "base").mkdir()
        base = base_tree(a.base, d / "base") if a.base else None
        for par in paradigms:
            opts = {**train, "exp": "bench", "arch": exp["arch"], "paradigm": par}
            vec = {**opts, "datasets": exp["datasets"], "seeds": seeds}
            t_before, t_after = float("inf"), float("inf")
            for _ in range(a.repeats):  # interleaved, the fastest of each counts (a shared machine's load comes and goes)
                t_before = min(t_before, timed_train(base, vec, d / f"b_{par}", epochs_full, a.clock)) if base else float("nan")
                t_after = min(t_after, timed_train(ROOT, vec, d / f"a_{par}", epochs_full, a.clock))
            t_one = sum(timed_train(ROOT, {**opts, "datasets": [ds], "seeds": [seeds[0]]}, d / f"s_{par}_{ds}", epochs_full, a.clock)
                        for ds in exp["datasets"][:a.singles]) / min(a.singles, len(exp["datasets"]))
            jobs["before"].append(t_before)
            jobs["after"].append(t_after)
            jobs["alone"] += [t_one] * n_runs
            per_run = t_one * n_runs / t_after
            numbers = same_numbers(d / f"b_{par}", d / f"a_{par}")
            rows.append([par, n_runs, epochs_full, round(t_before, 1), round(t_after, 1), round(t_before / t_after, 2),
                         round(t_one, 1), round(per_run, 1), "ok" if per_run >= 10 else "FAIL", numbers])
            print(f"{par:17s} {epochs_full} epochs, projected: before {t_before:7.1f} s | after {t_after:7.1f} s "
                  f"({t_before / t_after:4.2f}x) | one run alone {t_one:6.1f} s | per-run speedup {per_run:5.1f}x "
                  f"{'ok' if per_run >= 10 else 'FAIL (< 10x)'} | layerwise after vs before: {numbers}", flush=True)
        prof = {"before": profile(base, 5), "after": profile(ROOT, 5)} if a.profile else {}
    grid = {k: pack(v, a.cores) for k, v in jobs.items()}
    print(f"\nfull Table 1 grid at scale={a.scale} ({len(jobs['alone'])} runs, {epochs_full} epochs) on {a.cores} cores, "
          f"projected from {a.epochs} timed epochs:\n  before (vectorised, base {a.base or '-'})  {grid['before'] / 60:7.1f} min\n"
          f"  after  (vectorised)          {grid['after'] / 60:7.1f} min\n  one run per process          {grid['alone'] / 60:7.1f} min\n"
          f"  after vs before {grid['before'] / grid['after']:5.2f}x, after vs one run per process {grid['alone'] / grid['after']:5.1f}x")
    for side, lines in prof.items():
        print(f"\none step per paradigm, {side} (benchmarks/profile_step.py):\n" + "\n".join(lines))
    worst = min(r[7] for r in rows)
    rows.append(["GRID", len(jobs["alone"]), epochs_full, round(grid["before"], 1), round(grid["after"], 1),
                 round(grid["before"] / grid["after"], 2), round(grid["alone"], 1), round(grid["alone"] / grid["after"], 1),
                 "ok" if worst >= 10 else "FAIL", ""])
    io.write_csv(ROOT / a.out, ["paradigm", "n_runs", "epochs", "before_s", "after_s", "after_speedup", "alone_s_per_run",
                                "per_run_speedup", "check_10x", "layerwise_vs_before"], rows)
    io.write_json((ROOT / a.out).with_suffix(".json"), {**io.provenance(), "scale": a.scale, "timed_epochs": a.epochs,
                                                        "cores": a.cores, "base": a.base, "clock": a.clock, "repeats": a.repeats, "profile": prof})


if __name__ == "__main__":
    main()
