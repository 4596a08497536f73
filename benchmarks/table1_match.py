"""Do two trainings of Table 1 give the same numbers? Final-depth test MSE of every run of two run folders (say, the
committed runs and a re-run on other code: the compiled kernels against the PyTorch path), compared per paradigm
and surface.

    python benchmarks/table1_match.py NEW_DIR OLD_DIR [--out results/benchmarks/table1_match.csv]

NEW_DIR and OLD_DIR hold one folder per paradigm (results/runs/<scale>/table1/<arch>). Per (paradigm, surface): the
difference of the seeds' mean log10 MSE (new - old), the seeds' standard deviation of log10 MSE in OLD, and whether
the difference lies within it (two means of n seeds part by sd x sqrt(2 / n) by chance alone, so most cells should);
per paradigm the mean |difference|; overall the geometric-mean LPA / Simultaneous ratio under both, and the kernels
each folder's run.json records. Bit-identical folders give differences of 0.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lpa_core import io  # noqa: E402


def final_mse(run_dir):
    """log10 test MSE at full depth per (dataset, seed)."""
    t = pd.read_csv(run_dir / "layerwise.csv")
    t = t[(t.depth == t.depth.max()) & (t.metric == "mse")]
    return np.log10(t.set_index(["dataset", "seed"]).value)


def lpa_over_sim(folder):
    """Geometric mean over surfaces of mean-over-seeds MSE, LPA over Simultaneous (the headline claim)."""
    m = {p: 10 ** final_mse(folder / p) for p in ("lpa", "simultaneous")}
    return float(10 ** np.mean(np.log10(m["lpa"].groupby("dataset").mean() / m["simultaneous"].groupby("dataset").mean())))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("new", type=Path)
    p.add_argument("old", type=Path)
    p.add_argument("--out", default="results/benchmarks/table1_match.csv")
    a = p.parse_args()
    rows = []
    for par in sorted(d.name for d in a.new.iterdir() if (d / "layerwise.csv").exists() and (a.old / d.name / "layerwise.csv").exists()):
        new, old = final_mse(a.new / par), final_mse(a.old / par)
        for ds in new.index.get_level_values(0).unique():
            x, y = new.loc[ds], old.loc[ds].loc[new.loc[ds].index]
            diff, sd = float(x.mean() - y.mean()), float(y.std())
            rows.append(dict(paradigm=par, dataset=ds, n_seeds=len(x), log10_diff=round(diff, 4), old_seed_sd=round(sd, 4),
                             within_sd=abs(diff) <= sd, max_run_log10_diff=round(float((x - y).abs().max()), 4)))
    r = pd.DataFrame(rows)
    out = ROOT / a.out
    io.write_csv(out, list(r.columns), r.values.tolist())
    kernel = {k: json.loads((f / "lpa/run.json").read_text()).get("kernel", "torch (before run.json recorded it)") for k, f in (("new", a.new), ("old", a.old))}
    summary = dict(cells=len(r), within_sd=int(r.within_sd.sum()), median_abs_log10_diff=float(r.log10_diff.abs().median()),
                   max_abs_log10_diff=float(r.log10_diff.abs().max()), lpa_over_sim_new=round(lpa_over_sim(a.new), 3),
                   lpa_over_sim_old=round(lpa_over_sim(a.old), 3), kernel=kernel,
                   per_paradigm_mean_abs_log10_diff=r.groupby("paradigm").log10_diff.apply(lambda s: round(float(s.abs().mean()), 4)).to_dict())
    out.with_suffix(".json").write_text(json.dumps({**summary, "new": str(a.new), "old": str(a.old), **io.provenance("cpu")}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
