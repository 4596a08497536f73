"""Speed of the tiny-model track: vectorised groups vs one run per process, side by side.

    python benchmarks/table1_speed.py [--epochs 3] [--scale paper] [--out results/benchmarks/table1_speed.csv]

For each paradigm of config/config.yaml's Table 1 it times (a) the vectorised job the workflow runs (every
surface x seed as one model, one process, one thread) and (b) single runs (one surface, one seed), each in its own
process as a one-run-per-process workflow would start it, both over the same `--epochs` of the chosen scale's
budget. It prints seconds per epoch, the projected wall time of the full grid at that scale on this machine's
cores (jobs packed onto cores longest first), and the speedup of (a) over (b). Results go to a CSV with provenance.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lpa_core import io  # noqa: E402


def timed_train(opts, tmp, epochs_full):
    """Projected wall seconds of `python -m lpa_core train` with these options at `epochs_full` epochs: the process's
    fixed cost (start, imports, data, outputs) once, plus the training loop's time per timed epoch (run.json's
    wall_s) times epochs_full."""
    args = [sys.executable, "-m", "lpa_core", "train", "--out", str(tmp / "out"), "--ckpt-dir", str(tmp / "ck"),
            "--threads", "1"] + [x for k, v in opts.items() for x in (f"--{k}", ",".join(map(str, v)) if isinstance(v, list) else str(v))]
    t = time.perf_counter()
    subprocess.run(args, check=True, cwd=ROOT, capture_output=True)
    total = time.perf_counter() - t
    loop = json.loads((tmp / "out/run.json").read_text())["wall_s"]
    return total - loop + loop / opts["epochs"] * epochs_full


def pack(durations, cores):
    """Makespan of jobs packed longest-first onto `cores` workers."""
    load = [0.0] * cores
    for d in sorted(durations, reverse=True):
        load[load.index(min(load))] += d
    return max(load)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="epochs timed per job (the loop's time scales linearly)")
    p.add_argument("--scale", default="paper")
    p.add_argument("--singles", type=int, default=2, help="single runs timed per paradigm")
    p.add_argument("--out", default="results/benchmarks/table1_speed.csv")
    a = p.parse_args()
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    exp = cfg["table1"]
    over = cfg["scales"][a.scale].get("table1", {})
    train = {**exp["train"], **over.get("train", {})}
    seeds = over.get("seeds", exp["seeds"])
    epochs_full = train["epochs"]
    train.update(epochs=a.epochs, eval_every=a.epochs, adaptive_warmup=min(train.get("adaptive_warmup", 10), a.epochs - 1))
    cores = os.cpu_count()
    rows, vec_jobs, single_jobs = [], [], []
    with tempfile.TemporaryDirectory() as d:
        for par in exp["paradigms"]:
            base = {**train, "exp": "bench", "arch": exp["arch"], "paradigm": par}
            t_vec = timed_train({**base, "datasets": exp["datasets"], "seeds": seeds}, Path(d) / f"v_{par}", epochs_full)
            t_one = sum(timed_train({**base, "datasets": [ds], "seeds": [seeds[0]]}, Path(d) / f"s_{par}_{ds}", epochs_full)
                        for ds in exp["datasets"][:a.singles]) / min(a.singles, len(exp["datasets"]))
            n_runs = len(exp["datasets"]) * len(seeds)
            vec_jobs.append(t_vec)
            single_jobs += [t_one] * n_runs
            rows.append([par, n_runs, epochs_full, round(t_vec, 1), round(t_one, 1), round(t_one * n_runs / t_vec, 1)])
            print(f"{par:17s} {epochs_full} epochs, projected: vectorised job of {n_runs} runs {t_vec:7.1f} s | one run "
                  f"per process {t_one:6.1f} s/run | speedup {t_one * n_runs / t_vec:5.1f}x", flush=True)
    grid_vec, grid_single = pack(vec_jobs, cores), pack(single_jobs, cores)
    print(f"\nfull Table 1 grid at scale={a.scale} ({len(single_jobs)} runs, {epochs_full} epochs) on {cores} cores, "
          f"projected from {a.epochs} timed epochs:\n  vectorised jobs   {grid_vec / 60:7.1f} min\n"
          f"  one run/process   {grid_single / 60:7.1f} min\n  speedup           {grid_single / grid_vec:7.1f}x")
    rows.append(["GRID", len(single_jobs), epochs_full, round(grid_vec, 1), round(grid_single, 1), round(grid_single / grid_vec, 1)])
    io.write_csv(ROOT / a.out, ["paradigm", "n_runs", "epochs", "vectorised_s", "single_run_s", "speedup"], rows)
    io.write_json((ROOT / a.out).with_suffix(".json"), {**io.provenance(), "scale": a.scale, "timed_epochs": a.epochs, "cores": cores})


if __name__ == "__main__":
    main()
