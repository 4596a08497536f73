"""ANCRé runs read against the paper, for any report to call: a run's topology variant and wiring from its resolved
config, and the paper's LLaMA ordering judged on the ANCRé table (ancre.csv), per wiring.

Variant names are the workflow's (workflow/rules/common.smk TOPOLOGY_VARIANTS): cascade, ancre (ingoing),
ancre_outgoing, ancre_none, all_fixed, gains in the paper's wiring (`replace`), each suffixed `_add` in the authors'
(`add`, lpa_core.topology). cascade has no mix, so it is one row shared by both wirings. A run made before the
`wiring` key existed ran `replace`.

The paper's ordering (ANCRé Tables 2, 4, 5, LLaMA-130M/350M on C4): ANCRé (ingoing) has the lowest perplexity of
{ancre, ancre_outgoing, cascade} and the cascade the highest (24.48 < 25.03 < 25.07 at 130M; 18.32 < 18.63 < 19.0 at
350M), and unnormalised coefficients diverge. `paper_ordering` checks each of the three on every cell (dataset x
model) of the table for each (arch, paradigm, wiring) that has cascade and ancre rows (ancre_outgoing joins the
comparison where it was run; ancre_none where it was run): better = lower MSE / perplexity, higher accuracy; a cell
whose every run diverged is the worst.
"""
import math

ADD = "_add"
HIGHER_BETTER = {"test_acc_pct"}
ORDER_METRICS = ("mse", "test_acc_pct", "val_ppl")  # the metric each track's rows are ranked by
CHECKS = {"ancre_best": "ANCRé (ingoing) best of ancre, cascade and ancre_outgoing where run",
          "cascade_worst": "cascade worst of ancre, cascade and ancre_outgoing where run",
          "none_diverges": "ancre_none: at least half of the runs diverge"}
ORDER_COLUMNS = ["arch", "paradigm", "wiring", "metric", "check", "rule", "holds_in", "cells", "verdict"]


def wiring(cfg):
    """'replace' or 'add' for a run with a shortcut mix, '' for cascade (no mix: the same under either wiring)."""
    if cfg.get("topology", "cascade") == "cascade":
        return ""
    return cfg.get("wiring", "replace")


def variant(cfg):
    """The run's variant name from its resolved config (run.json's `config`)."""
    topo, norm = cfg.get("topology", "cascade"), cfg.get("normalisation", "ingoing")
    base = topo if topo != "ancre" or norm == "ingoing" else f"ancre_{norm}"
    return base + ADD if wiring(cfg) == "add" else base


def variant_wiring(name):
    """Wiring of a variant name: 'add' (suffix _add), '' (cascade), else 'replace'."""
    return "add" if name.endswith(ADD) else "" if name == "cascade" else "replace"


def base_variant(name):
    return name[:-len(ADD)] if name.endswith(ADD) else name


def _score(row, higher):
    """A cell's mean, signed so that lower is better; every run diverged -> worst."""
    if row is None:
        return None
    if row["n_seeds"] == 0 or not math.isfinite(row["mean"]):
        return math.inf
    return -row["mean"] if higher else row["mean"]


def paper_ordering(tab):
    """Rows of ORDER_COLUMNS: for every (arch, paradigm, wiring) with a cascade row and the wiring's ancre rows, each
    check of CHECKS with the cells where it holds; verdict 'holds' (every cell), 'fails' (some cell), 'not run'
    (the variants are missing). tab: ancre.csv as a DataFrame (dataset, arch, paradigm, topology, metric, mean,
    n_seeds, n_diverged)."""
    t = tab[tab.metric.isin(ORDER_METRICS)]
    rows = []
    for (arch, par), g in t.groupby(["arch", "paradigm"], sort=False):
        metric = g.metric.iloc[0]
        higher = metric in HIGHER_BETTER
        cells = {(r.topology, r.dataset): r._asdict() for r in g.itertuples()}
        datasets = list(dict.fromkeys(g.dataset))
        for w, sfx in (("replace", ""), ("add", ADD)):
            names = {"cascade": "cascade", "ancre": "ancre" + sfx, "ancre_outgoing": "ancre_outgoing" + sfx}
            if not any((names["ancre"], d) in cells for d in datasets):
                continue
            full = [d for d in datasets if (names["cascade"], d) in cells and (names["ancre"], d) in cells]
            sc = {d: {k: _score(cells.get((n, d)), higher) for k, n in names.items()} for d in full}
            others = lambda d, k: [v for o, v in sc[d].items() if o != k and v is not None]  # noqa: E731
            best = [d for d in full if sc[d]["ancre"] < min(others(d, "ancre"))]
            worst = [d for d in full if sc[d]["cascade"] > max(others(d, "cascade"))]
            for check, holds in (("ancre_best", best), ("cascade_worst", worst)):
                rows.append(dict(arch=arch, paradigm=par, wiring=w, metric=metric, check=check, rule=CHECKS[check],
                                 holds_in=len(holds), cells=len(full),
                                 verdict="not run" if not full else "holds" if len(holds) == len(full) else "fails"))
            none = [cells[(f"ancre_none{sfx}", d)] for d in datasets if (f"ancre_none{sfx}", d) in cells]
            div, n = sum(r["n_diverged"] for r in none), sum(r["n_seeds"] + r["n_diverged"] for r in none)
            rows.append(dict(arch=arch, paradigm=par, wiring=w, metric=metric, check="none_diverges",
                             rule=CHECKS["none_diverges"], holds_in=div, cells=n,
                             verdict="not run" if not n else "holds" if 2 * div >= n else "fails"))
    return rows
