"""The pieces of benchmarks/gpu_acceptance.sh that are Python: how many epochs fit a time budget, and the summary
of one acceptance run (MFU per model, the issue's goals, the short trainings) from the files it wrote.

    python benchmarks/gpu_report.py epochs --speed OUT/benchmarks/gpu/vision_speed.csv --arch resnet18 \
        --paradigm lpa --images 20000 --budget 45 [--max 30]
    python benchmarks/gpu_report.py summary --out OUT

summary writes, under OUT/benchmarks/gpu/:
  mfu.csv       arch, paradigm, precision, model_tflops_per_s, peak_tflops, mfu: every row of vision_speed.csv and
                lm_speed.csv (lpa_core.cost reads the Simultaneous bf16 rows as the measured MFU of each model)
  goals.csv     goal, measured, target, met: LPA's per-batch cost over its FLOP ratio (<= 1.15, per model),
                ANCRe's step time on ViT-12 at batch 128 (< +3%), MFU of llama_60m (>= 25%) and ViT-12 (>= 15%), bf16
  training.csv  arch, paradigm, epochs, steps, wall_s, test accuracy at full depth, from OUT/runs/gpu/*/*/seed0
  summary.md    the three tables as Markdown (for the docs), with the hardware and commit they came from
"""
import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

GOALS = {"lpa_cost_over_flops": 1.15, "ancre_vit12_time": 1.03, "mfu_llama_60m": 0.25, "mfu_vit12": 0.15}


def epochs_for(speed_csv, arch, paradigm, images, budget_s, most=30):
    """Epochs of `images` training images that fit budget_s at the images/s vision_speed measured (at least 1);
    evaluation (about a third of a Simultaneous epoch's compute) is inside the budget's slack."""
    t = pd.read_csv(speed_csv)
    row = t[(t.arch == arch) & (t.paradigm == paradigm)]
    if row.empty:
        raise ValueError(f"{speed_csv}: no row for {arch} / {paradigm}")
    return max(1, min(most, math.floor(budget_s * float(row.images_per_s.iloc[0]) / images / 1.3)))


def markdown(t):
    """A pipe table (no tabulate needed on the GPU machine)."""
    lines = ["| " + " | ".join(map(str, t.columns)) + " |", "|" + "---|" * len(t.columns)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in t.itertuples(index=False)])


def read(path):
    return pd.read_csv(path) if Path(path).is_file() else pd.DataFrame()


def summary(out):
    out = Path(out)
    bench = out / "benchmarks" / "gpu"
    vis, lm, topo = read(bench / "vision_speed.csv"), read(bench / "lm_speed.csv"), read(bench / "topology_overhead.csv")
    cols = ["arch", "paradigm", "precision", "model_tflops_per_s", "mfu"]
    mfu = pd.concat([t[cols] for t in (vis, lm) if not t.empty], ignore_index=True) if len(vis) + len(lm) else pd.DataFrame(columns=cols)
    peak = json.loads((bench / "vision_speed.json").read_text()).get("peak_flops") if (bench / "vision_speed.json").is_file() else None
    mfu.insert(4, "peak_tflops", peak / 1e12 if peak else float("nan"))
    mfu.to_csv(bench / "mfu.csv", index=False)

    goals = []
    for _, r in vis[vis.paradigm == "lpa"].iterrows() if not vis.empty else []:
        ratio = r.cost_vs_simultaneous / r.theory_flops_vs_simultaneous
        goals.append([f"LPA per batch / FLOP ratio, {r.arch}", round(ratio, 3), GOALS["lpa_cost_over_flops"], ratio <= GOALS["lpa_cost_over_flops"]])
    if not topo.empty:
        v = topo[(topo.arch == "vit12") & (topo.topology == "ancre")]
        if len(v):
            t = float(v.time_vs_cascade.iloc[0])
            goals.append([f"ANCRe step time / cascade, vit12 batch {int(v.batch.iloc[0])}", round(t, 4), GOALS["ancre_vit12_time"], t < GOALS["ancre_vit12_time"]])
    for arch, key in (("llama_60m", "mfu_llama_60m"), ("vit12", "mfu_vit12")):
        m = mfu[(mfu.arch == arch) & (mfu.paradigm == "simultaneous") & (mfu.precision == "bf16")]
        if len(m) and pd.notna(m.mfu.iloc[0]):
            goals.append([f"MFU {arch} bf16 (Simultaneous)", round(float(m.mfu.iloc[0]), 4), GOALS[key], float(m.mfu.iloc[0]) >= GOALS[key]])
    goals = pd.DataFrame(goals, columns=["goal", "measured", "target", "met"])
    goals.to_csv(bench / "goals.csv", index=False)

    rows = []
    for run in sorted((out / "runs" / "gpu").glob("*/*/seed*")):
        try:
            info = json.loads((run / "run.json").read_text())
            s, lw = pd.read_csv(run / "summary.csv").iloc[0], pd.read_csv(run / "layerwise.csv")
        except (OSError, ValueError, KeyError):
            continue
        acc = lw[(lw.metric == "test_acc_pct") & (lw.depth == lw.depth.max())].value.iloc[0]
        rows.append([s.arch, s.paradigm, info["config"]["epochs"], int(s.steps), round(float(s.wall_s), 1), round(float(acc), 2),
                     info.get("precision", ""), info.get("hardware", "")])
    train = pd.DataFrame(rows, columns=["arch", "paradigm", "epochs", "steps", "wall_s", "test_acc_pct", "precision", "hardware"])
    train.to_csv(bench / "training.csv", index=False)

    prov = json.loads((out / "acceptance.json").read_text()) if (out / "acceptance.json").is_file() else {}
    md = [f"GPU acceptance run: {prov.get('hardware', '?')}, commit {prov.get('git_commit', '?')}, {prov.get('date', '?')}", ""]
    for title, t in (("Goals", goals), ("Model FLOP utilisation", mfu), ("Short training (Fashion-MNIST subset)", train)):
        md += [f"### {title}", "", markdown(t) if len(t) else "(none)", ""]
    (bench / "summary.md").write_text("\n".join(md))
    print("\n".join(md))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("epochs")
    e.add_argument("--speed", required=True)
    e.add_argument("--arch", required=True)
    e.add_argument("--paradigm", required=True)
    e.add_argument("--images", type=int, required=True)
    e.add_argument("--budget", type=float, required=True, help="seconds")
    e.add_argument("--max", type=int, default=30)
    s = sub.add_parser("summary")
    s.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.cmd == "epochs":
        print(epochs_for(a.speed, a.arch, a.paradigm, a.images, a.budget, a.max))
    else:
        summary(a.out)


if __name__ == "__main__":
    sys.exit(main())
