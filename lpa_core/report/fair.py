"""Issue #12's fair verdict (surface track): protocols side by side, paired-seed bootstrap intervals, verdicts,
time to target, the claims map and the protocol search. Reads run folders only through lpa_core.report.load.

    python -m lpa_core fair-report --runs results/runs/<scale> --paper config/paper_results.csv \
        --tables results/tables/fair --figures figures

Inputs: the paper protocol = <runs>/table1/resmlp/<paradigm>; the tuned runs <runs>/fair/<workload>/<dir>/<paradigm>/final
(dir epochs = protocol tuned, steps = equal_steps, flops = equal_flops). Outputs (in --tables): table1_fair, time_to_target
(csv + md), depth_error (csv + md: test mse at every depth, tuned and at equal compute), claims_map.csv, verdicts.csv,
protocol_search.csv; (in --figures) claims_map.png, protocol_search.png.
The rules (bootstrap, verdict, targets, distance) are in docs/fair.md.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lpa_core.registry import PARADIGMS, SURFACES
from lpa_core.report.load import LPA, load, paper, read, scale, stamp
from lpa_core.report.tables import HIGHER, grid, quarters, rank, write

PROTOCOLS = {"paper": None, "tuned": "epochs", "equal_steps": "steps", "equal_flops": "flops"}  # name: fair/<w>/<dir>
VARIANTS = ["table1", "domain_2", "domain_pi", "domain_5", "epochs_10", "epochs_30", "epochs_500", "width_32", "depth_12"]
SIM, SEQ, LPA_P = "simultaneous", "sequential", "lpa"
METRICS = ["mse", "mae", "mse_mean_depth"]
B, SEED, FRACS = 10_000, 0, (0.1, 0.3, 1.0)
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
CLAIMS = {"LPA beats Simultaneous": (LPA_P, [SIM], -1), "Sequential is worst": (SEQ, [SIM, LPA_P], +1),
          "Sequential worse than Simultaneous": (SEQ, [SIM], +1)}  # claim: (numerator, denominators, claimed side)


# ----------------------------------------------------------------------------- statistics
def boot(num, dens=()):
    """(point, low, high) of a statistic of paired seeds, 95 % percentile interval over B resamples of the seeds
    (fixed generator SEED). num, dens: [S, n] (S surfaces x n seeds, the same seed per column). Without dens: the mean
    over seeds (S = 1); with dens: the geometric mean over surfaces of mean(num) / max over dens of mean(den)."""
    num, dens = np.atleast_2d(num), [np.atleast_2d(d) for d in dens]

    def stat(idx):
        m = lambda a: a[:, idx].mean(-1)
        if not dens:
            return m(num)[0]
        return np.exp(np.log(m(num) / np.max([m(d) for d in dens], 0)).mean(0))
    n = num.shape[1]
    lo, hi = np.percentile(stat(np.random.default_rng(SEED).integers(0, n, (B, n))), [2.5, 97.5])
    return float(stat(np.arange(n))), float(lo), float(hi)


def verdict(lo, hi, side):
    """side -1: the claim says the ratio is below 1; +1: above 1. Reproduced: the whole interval on the claimed side."""
    if not np.isfinite([lo, hi]).all():
        return INCONCLUSIVE
    return REPRODUCED if side * (lo - 1) > 0 and side * (hi - 1) > 0 else (
        NOT_REPRODUCED if side * (lo - 1) < 0 and side * (hi - 1) < 0 else INCONCLUSIVE)


# ----------------------------------------------------------------------------- run folders -> observations
def gather(root):
    """{(workload, protocol): [Run]} of what is present; one stderr line per absent protocol of table1."""
    root, got = Path(root), {}
    if (root / "table1" / "resmlp").is_dir():
        got["table1", "paper"] = load([root / "table1" / "resmlp"])
    for w in VARIANTS:
        for proto, d in PROTOCOLS.items():
            finals = sorted(p for p in (root / "fair" / w / str(d)).glob("*/final") if d and (p / "run.json").is_file())
            if finals:
                got[w, proto] = load(finals)
    for proto, d in PROTOCOLS.items():
        if ("table1", proto) not in got:
            where = root / ("table1/resmlp" if d is None else f"fair/table1/{d}")
            print(f"fair-report: protocol {proto} left out: no finished runs under {where}", file=sys.stderr)
    if not got:
        raise ValueError(f"runs: no Table 1 or fair run folders under '{root}'")
    return got


def picks(r):
    """{dataset: the run's peak lr}: the tuned picks (dataset_lrs) or the shared lr."""
    lrs = r.cfg.get("dataset_lrs") or []
    return dict(zip(r.cfg["datasets"], lrs)) if lrs else {d: r.cfg["lr"] for d in r.cfg["datasets"]}


def observe(got):
    """Per-seed observations: workload, protocol, dataset, paradigm, seed, metric, value, ok, selected_lr, sd (the
    target's std over the domain, from grid.npz's truth: the normalised aggregation). Metrics: mse, mae at the final
    depth, mse_mean_depth, mae_mean_depth. The equal-compute protocols take LPA (their reference) from tuned."""
    out = []
    for (w, proto), runs in got.items():
        for r in runs:
            lw = read([r], "layerwise.csv")
            lw = lw[lw.metric.isin(["mse", "mae"])]
            fin = lw[lw.depth == lw.groupby("dataset").depth.transform("max")]
            mean = lw.groupby(["dataset", "paradigm", "seed", "metric"], as_index=False).agg(
                value=("value", "mean"), status=("status", "first")).assign(metric=lambda d: d.metric + "_mean_depth")
            g = np.load(r.dir / "grid.npz") if (r.dir / "grid.npz").is_file() else None
            sd = ({str(d): float(np.std(t)) for d, t in zip(g["datasets"], g["truth"])} if g is not None
                  else r.info.get("target_sd", {}))  # a lean tune folder keeps them in run.json (lpa_core.tune.lean)
            f = pd.concat([fin, mean], ignore_index=True)
            out.append(f.assign(workload=w, protocol=proto, ok=f.status == "ok", selected_lr=f.dataset.map(picks(r)),
                                sd=f.dataset.map(sd).astype(float)))
    obs = pd.concat(out, ignore_index=True)[["workload", "protocol", "dataset", "paradigm", "seed", "metric", "value", "ok",
                                             "selected_lr", "sd"]]
    for proto in ("equal_steps", "equal_flops"):
        for w in obs.workload[obs.protocol == proto].unique():
            if not ((obs.workload == w) & (obs.protocol == proto) & (obs.paradigm == LPA_P)).any():
                obs = pd.concat([obs, obs[(obs.workload == w) & (obs.protocol == "tuned") & (obs.paradigm == LPA_P)]
                                 .assign(protocol=proto)], ignore_index=True)
    return obs


def wide(o, paradigms):
    """dataset x seed x paradigm values of `o` (one workload, protocol, metric): the seeds where every paradigm is ok."""
    o = o[o.ok & o.paradigm.isin(paradigms)]
    m = o.pivot_table(index=["dataset", "seed"], columns="paradigm", values="value", aggfunc="first")
    return m.dropna() if set(paradigms) <= set(m.columns) else m.iloc[:0]


# ----------------------------------------------------------------------------- tables
KEY_ORDER = ["workload", "dataset", "arch", "topology", "depth", "paradigm", "protocol", "metric"]  # cells' key columns


def cells(obs, by=("workload", "protocol", "dataset", "metric"), min_seeds=1):
    """Per `by` group (surfaces: workload, protocol, dataset, metric) and paradigm: mean (CI), ratio to Simultaneous of
    the same group (paired seeds, CI); selected_lr where obs has it. An interval needs min_seeds seeds (else NaN)."""
    rows, nan = [], (np.nan,) * 3
    for key, o in obs.groupby(list(by), sort=False):
        for par in sorted(o.paradigm.unique(), key=rank):
            x = o[(o.paradigm == par) & o.ok].value.to_numpy()
            mean, lo, hi = boot(x) if len(x) else nan
            pair = wide(o, [par, SIM])
            ratio = boot(pair[par].to_numpy(), [pair[SIM].to_numpy()]) if len(pair) and par != SIM else nan
            if par == SIM and len(pair):
                ratio = (1.0, 1.0, 1.0)
            if len(x) < min_seeds:
                lo = hi = np.nan
            if len(pair) < min_seeds:
                ratio = (ratio[0], np.nan, np.nan)
            lr = {"selected_lr": o[o.paradigm == par].selected_lr.iloc[0]} if "selected_lr" in o else {}
            k = {**dict(zip(by, key)), "paradigm": par}
            rows.append(dict(**{c: k[c] for c in KEY_ORDER if c in k}, mean=mean, ci_low=lo, ci_high=hi, n_seeds=len(x), **lr,
                             ratio=ratio[0], ratio_low=ratio[1], ratio_high=ratio[2]))
    return pd.DataFrame(rows)


def verdicts(obs):
    """Per claim, workload table1, protocol, metric (mse, mae) and surface (+ 'all': geometric mean over surfaces)."""
    rows = []
    o1 = obs[obs.workload == "table1"]
    for (proto, met), o in o1[o1.metric.isin(["mse", "mae"])].groupby(["protocol", "metric"], sort=False):
        for claim, (num, dens, side) in list(CLAIMS.items())[:2]:
            m = wide(o, [num, *dens])
            if m.empty:
                continue
            seeds = m.groupby("seed").size().pipe(lambda s: s.index[s == s.max()])  # seeds with every surface
            full = m[m.index.get_level_values("seed").isin(seeds)].unstack("seed").dropna()
            groups = [(ds, m.loc[ds]) for ds in m.index.unique("dataset")]
            for ds, g in groups + [("all", None)]:
                arr = (lambda p: g[p].to_numpy()[None]) if g is not None else (lambda p: full[p].to_numpy())
                r, lo, hi = boot(arr(num), [arr(d) for d in dens])
                rows.append(dict(claim=claim, protocol=proto, workload="table1", dataset=ds, metric=met, ratio=r,
                                 ratio_low=lo, ratio_high=hi, n_seeds=arr(num).shape[1], verdict=verdict(lo, hi, side)))
    return pd.DataFrame(rows)


def claims_map(tab):
    """Per variant x surface: LPA's and Sequential's final-depth test-mse ratio to Simultaneous, at equal epochs (tuned)
    and at equal compute (equal_flops if the variant has it, else equal_steps), with the verdict."""
    t = tab[(tab.metric == "mse") & tab.paradigm.isin([LPA_P, SEQ])]
    rows = []
    for w in [v for v in VARIANTS if v in set(t.workload)]:
        tw = t[t.workload == w]
        eq = "equal_flops" if (tw.protocol == "equal_flops").any() else "equal_steps"
        for compute, proto in (("equal epochs", "tuned"), ("equal compute", eq)):
            for r in tw[(tw.protocol == proto) & np.isfinite(tw.ratio)].itertuples():  # no ratio: Simultaneous not run
                claim = "LPA beats Simultaneous" if r.paradigm == LPA_P else "Sequential worse than Simultaneous"
                rows.append(dict(variant=w, dataset=r.dataset, paradigm=r.paradigm, compute=compute, protocol=proto, ratio=r.ratio,
                                 ratio_low=r.ratio_low, ratio_high=r.ratio_high, n_seeds=r.n_seeds, claim=claim,
                                 verdict=verdict(r.ratio_low, r.ratio_high, CLAIMS[claim][2])))
    return pd.DataFrame(rows, columns=["variant", "dataset", "paradigm", "compute", "protocol", "ratio", "ratio_low",
                                       "ratio_high", "n_seeds", "claim", "verdict"])


def where_holds(cm):
    """Per claim, compute and variant: how many surfaces reproduce the claim, contradict it or leave it open, and the
    reading: `holds` when most surfaces reproduce it, `fails` when most contradict it, else `mixed`."""
    rows, first = [], {"LPA beats Simultaneous": 0, "equal epochs": 0}  # LPA's claim first, equal epochs first
    cm = cm.sort_values(["claim", "compute"], key=lambda c: c.map(lambda v: first.get(v, 1)), kind="stable")
    for (claim, compute, w), g in cm.groupby(["claim", "compute", "variant"], sort=False):
        n = {v: int((g.verdict == v).sum()) for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)}
        gm = float(np.exp(np.log(g.ratio[g.ratio > 0]).mean())) if (g.ratio > 0).any() else np.nan
        reading = "holds" if 2 * n[REPRODUCED] > len(g) else "fails" if 2 * n[NOT_REPRODUCED] > len(g) else "mixed"
        rows.append(dict(claim=claim, compute=compute, protocol=g.protocol.iloc[0], variant=w, surfaces=len(g),
                         reproduced=n[REPRODUCED], not_reproduced=n[NOT_REPRODUCED], inconclusive=n[INCONCLUSIVE],
                         geomean_ratio=gm, reading=reading))
    return pd.DataFrame(rows)


HOLDS_TEXT = ("Per claim, compute and workload variant (one factor of the paper's setting changed): the surfaces where the "
              "claim is reproduced / not reproduced / inconclusive (95 % paired-seed bootstrap CI of the final-depth test-MSE "
              "ratio to Simultaneous), the geometric mean of the ratio over surfaces, and the reading: holds when most "
              "surfaces reproduce it, fails when most contradict it, else mixed.")


def lr_edges(got):
    """Per protocol and paradigm of the tuned runs (every workload): how many of the picks (one per workload and
    surface) sit on the highest or the lowest of the trials' learning rates (trials/run.json `lrs`): there the
    best lr may lie beyond the trials, and the paradigm is tuned less well than the count of trials says."""
    rows = []
    for (w, proto), rs in got.items():
        for r in rs:
            if proto == "paper" or not (r.dir.parent / "trials" / "run.json").is_file():
                continue
            lrs = load([r.dir.parent / "trials"])[0].cfg.get("lrs") or []
            for d, lr in picks(r).items():
                rows.append(dict(protocol=proto, paradigm=r.cfg["paradigm"], workload=w, dataset=d, lr=lr,
                                 top=bool(lrs) and lr >= max(lrs), bottom=bool(lrs) and lr <= min(lrs)))
    t = pd.DataFrame(rows, columns=["protocol", "paradigm", "workload", "dataset", "lr", "top", "bottom"])
    return (t.groupby(["protocol", "paradigm"], sort=False)
            .agg(picks=("lr", "size"), at_top=("top", "sum"), at_bottom=("bottom", "sum")).reset_index())


EDGES_TEXT = ("Tuned picks (one per workload and surface) on the highest or the lowest of the trials' learning rates: "
              "the best rate may lie beyond the trials there, so such a paradigm is tuned less well than its trial count says.")


def md_edges(e):
    return "\n".join(["## Learning-rate picks at the edge of the trials", "", EDGES_TEXT, "",
                      *grid(["protocol", "paradigm", "picks", "at the highest trial lr", "at the lowest"],
                            [[r.protocol, r.paradigm, str(r.picks), str(r.at_top), str(r.at_bottom)] for r in e.itertuples()]), ""])


def md_holds(h):
    lines = ["# Where each claim holds (claims map)", "", HOLDS_TEXT, ""]
    for (claim, compute), g in h.groupby(["claim", "compute"], sort=False):
        held = ", ".join(g[g.reading == "holds"].variant) or "none"
        lines += [f"## {claim}, {compute} ({g.protocol.iloc[0]})", "", f"Holds in: {held}.", "",
                  *grid(["variant", "reproduced", "not reproduced", "inconclusive", "ratio (geo. mean)", "reading"],
                        [[r.variant, f"{r.reproduced}/{r.surfaces}", f"{r.not_reproduced}/{r.surfaces}",
                          f"{r.inconclusive}/{r.surfaces}", f"{r.geomean_ratio:.3g}", r.reading] for r in g.itertuples()]), ""]
    return "\n".join(lines)


def holds_html(cm, esc, table_html):
    """The report's "where each claim holds" block (html.build shows it when claims_map.csv is among the tables)."""
    h = where_holds(cm)
    if h.empty:
        return ""
    out = ["<h3 id=claims-map>Where each claim holds (claims map, issue #12)</h3><p class=s>" + esc(HOLDS_TEXT) + "</p>"]
    for (claim, compute), g in h.groupby(["claim", "compute"], sort=False):
        held = ", ".join(g[g.reading == "holds"].variant) or "none of the variants"
        out.append(f"<p><b>{esc(claim)}</b>, {esc(compute)}: holds in {esc(held)}.</p>" + table_html(
            ["variant", "reproduced", "not reproduced", "inconclusive", "ratio (geo. mean)", "reading"],
            [(esc(r.variant), f"{r.reproduced}/{r.surfaces}", f"{r.not_reproduced}/{r.surfaces}", f"{r.inconclusive}/{r.surfaces}",
              f"{r.geomean_ratio:.3g}", esc(r.reading)) for r in g.itertuples()]))
    return "".join(out)


def curve(r, metric, **cols):
    """History of one run's `metric` (full depth) with seconds (the job's wall_s / its runs: vectorised runs share it),
    the run's epochs, a flops column (NaN in runs made before FLOPs were counted) and `cols` ({column: value})."""
    h = read([r], "history.csv")
    n = len(r.info.get("runs") or [0])
    h = h[h.metric == metric].replace([np.inf, -np.inf], np.nan).assign(seconds=lambda d: d.wall_s / n, epochs=r.cfg["epochs"], **cols)
    return h.reindex(columns=[*h.columns, *(["flops"] if "flops" not in h else [])])


def reach(hist, ref, by, metric, higher=False):
    """Time to target, any track. hist: {(protocol, paradigm): curves}; per `by` group, the targets are ref's mean
    `metric` over seeds at the first evaluated epoch >= 10, 30, 100 % of its epochs. Per key, group, seed: the first
    evaluated epoch at or past the target (>= when higher is better, else <=) -> steps, flops, seconds; medians over
    the seeds that reached it (NaN and n_reached 0: never)."""
    rows, by = [], list(by)
    for grp, s in hist[ref].groupby(by, sort=False):
        at_grp = lambda h: h[np.logical_and.reduce([h[c] == v for c, v in zip(by, grp)])]  # noqa: E731
        for frac in FRACS:
            at = s[s.epoch >= frac * s.epochs.iloc[0] - 1e-9].epoch.min()
            target = float(s[s.epoch == at].value.mean())
            for (proto, par), h in hist.items():
                hs = [g.sort_values("epoch") for _, g in at_grp(h).groupby("seed")]
                ok = [(g.value >= target) if higher else (g.value <= target) for g in hs]
                hit = [g[m].iloc[0] for g, m in zip(hs, ok) if m.any()]
                med = {c: float(np.median([x[c] for x in hit])) if hit else np.nan for c in ("steps", "flops", "seconds")}
                rows.append(dict(**dict(zip(by, grp)), target_frac=frac, target_epoch=int(at), **{f"target_{metric}": target},
                                 protocol=proto, paradigm=par, reached=f"{len(hit)}/{len(hs)}", n_reached=len(hit), n_runs=len(hs),
                                 **{f"median_{c}": v for c, v in med.items()}))
    return pd.DataFrame(rows)


def time_to_target(got):
    """Targets per surface: tuned Simultaneous's mean val_mse at the first evaluated epoch >= 10, 30, 100 % of its epochs.
    Per protocol, paradigm, surface, seed: the first evaluated epoch at or below the target -> steps, flops, seconds."""
    hist = {(proto, r.paradigm): curve(r, "val_mse", protocol=proto)
            for proto in ("tuned", "equal_steps", "equal_flops") for r in got.get(("table1", proto), [])}
    if (key := ("tuned", SIM)) not in hist or hist[key].empty:
        print("fair-report: time_to_target left out: no tuned Simultaneous runs of table1 with val_mse", file=sys.stderr)
        return pd.DataFrame()
    t = reach(hist, key, ["dataset"], "val_mse")
    return t if t.empty else t.sort_values(["target_frac", "protocol", "paradigm"], kind="stable", key=lambda c: c.map(
        list(PROTOCOLS).index) if c.name == "protocol" else c.map(rank) if c.name == "paradigm" else c).reset_index(drop=True)


def depth_error(got):
    """Test mse at every depth (mean over ok seeds, bootstrap CI) of the table1 workload under the tuned and the
    equal-compute protocols: what a prefix of each paradigm's network is worth when the compute is equal."""
    rows = []
    for proto in ("tuned", "equal_steps", "equal_flops"):
        for r in got.get(("table1", proto), []):
            lw = read([r], "layerwise.csv")
            lw = lw[(lw.metric == "mse") & (lw.status == "ok")]
            for (ds, depth), g in lw.groupby(["dataset", "depth"], sort=False):
                mean, lo, hi = boot(g.value.to_numpy())
                rows.append(dict(dataset=ds, paradigm=r.paradigm, protocol=proto, depth=int(depth), metric="mse", mean=mean,
                                 ci_low=lo, ci_high=hi, n_seeds=len(g)))
    return pd.DataFrame(rows)


def md_depth(t):
    lines = ["# Test MSE at every depth (table1 workload), tuned and at equal compute", "",
             "mean over seeds [95 % bootstrap CI]; equal_steps / equal_flops runs took as many optimizer steps / FLOPs as tuned LPA.", ""]
    for ds, g in t.groupby("dataset", sort=False):
        depths = sorted(set(g.depth))
        rows = [[proto, par, *[(lambda r: f"{r['mean']:.3g} [{r.ci_low:.3g}, {r.ci_high:.3g}]")(x[x.depth == d].iloc[0])
                               if (x.depth == d).any() else "" for d in depths]]
                for (proto, par), x in g.groupby(["protocol", "paradigm"], sort=False)]
        lines += [f"## {ds}", "", *grid(["protocol", "paradigm", *map(str, depths)], rows), ""]
    return "\n".join(lines)


def search(obs, paper_csv):
    """Protocol-search candidates: each workload (tuned; table1 also under the paper protocol) x aggregation (final depth,
    mean over depths, normalised: mse / var(target), mae / std(target) over the domain) against the published Table 1:
    distance = mean |log10(ours / paper)|, rank_corr = Spearman of the paradigms per (surface, metric), averaged."""
    p = paper(paper_csv, LPA, "table1")
    p = p[p.paradigm.isin(list(PARADIGMS)) & p.metric.isin(["mse", "mae"])]
    p = p.assign(paper=pd.to_numeric(p.value, errors="coerce"))
    p = p[p.paper > 0][["dataset", "paradigm", "metric", "paper"]]
    o, rows = obs[obs.ok & obs.protocol.isin(["paper", "tuned"])], []
    aggs = {"final depth": lambda d: d[d.metric.isin(["mse", "mae"])],
            "mean over depths": lambda d: d[d.metric.str.endswith("_mean_depth")].assign(metric=lambda x: x.metric.str[:3]),
            "normalised": lambda d: d[d.metric.isin(["mse", "mae"])].assign(
                value=lambda x: x.value / np.where(x.metric == "mse", x.sd ** 2, x.sd))}
    for (w, proto), g in o.groupby(["workload", "protocol"], sort=False):
        for agg, fn in aggs.items():
            m = fn(g).groupby(["dataset", "paradigm", "metric"], as_index=False).value.mean().merge(p, on=["dataset", "paradigm", "metric"])
            m = m[np.isfinite(m.value) & (m.value > 0)]
            if m.empty:
                continue
            rho = [x.value.rank().corr(x.paper.rank()) for _, x in m.groupby(["dataset", "metric"]) if len(x) > 1]
            rows.append(dict(candidate=f"{w} · {proto} · {agg}", workload=w, protocol=proto, aggregation=agg,
                             distance=float(np.abs(np.log10(m.value / m.paper)).mean()),
                             rank_corr=float(np.nanmean(rho)) if rho and not np.isnan(rho).all() else np.nan, n_cells=len(m)))
    t = pd.DataFrame(rows)
    if not t.empty:
        t["best"] = t.index == t.sort_values(["distance", "rank_corr"], ascending=[True, False]).index[0]
    return t


# ----------------------------------------------------------------------------- markdown, figures
T1_NOTE = ("mean [95 % bootstrap CI over seeds] · ratio to Simultaneous under the same protocol (paired seeds, CI). Protocols: "
           "paper (equal epochs, shared recipe), tuned (equal epochs, each paradigm tuned on validation), equal_steps / "
           "equal_flops (as many optimizer steps / FLOPs as tuned LPA). Rules: docs/fair.md.")


def md_table1(tab, runs):
    lines = ["# Table 1 under four protocols (surfaces, final-depth test error)", "", T1_NOTE, "",
             f"Made by `python -m lpa_core fair-report`; {stamp(runs)}", ""]
    t = tab[tab.workload == "table1"]
    for met, g in t.groupby("metric", sort=False):
        ds = list(dict.fromkeys(g.dataset))
        rows = [[par, proto, *[(lambda r: f"{r['mean']:.3g} [{r.ci_low:.3g}, {r.ci_high:.3g}]" + (
                 f" ×{r.ratio:.2g} [{r.ratio_low:.2g}, {r.ratio_high:.2g}]" if par != SIM and np.isfinite(r.ratio) else ""))(
                 x[x.dataset == d].iloc[0]) if (x.dataset == d).any() else "" for d in ds]]
                for (par, proto), x in g.groupby(["paradigm", "protocol"], sort=False)]
        rows.sort(key=lambda r: (rank(r[0]), list(PROTOCOLS).index(r[1])))
        lines += [f"## {met}", "", *grid(["paradigm", "protocol", *ds], rows), ""]
    return "\n".join(lines)


TTT_TEXT = ("Target per surface: tuned Simultaneous's mean validation mse (full depth) at 10 / 30 / 100 % of its epochs. "
            "Cell: seeds reached / seeds; median steps, FLOPs, seconds over those that reached it ('never' when none did).")


def md_ttt(t, by=("dataset",), title="# Time to target (table1 workload)", text=TTT_TEXT):
    """Markdown of reach's rows: per target fraction, one row per (protocol, paradigm), one column per `by` group."""
    lines = [title, "", text, ""]
    label = lambda d: [" · ".join(map(str, k)) for k in zip(*[d[c] for c in by])]  # noqa: E731
    for frac, g in t.groupby("target_frac", sort=False):
        g = g.assign(group=label(g))
        ds = list(dict.fromkeys(g.group))
        cell = lambda r: f"{r.reached} · " + (f"{r.median_steps:.3g} steps, {r.median_flops:.3g} FLOPs, {r.median_seconds:.3g} s"
                                              if r.n_reached else "never")
        rows = [[proto, par, *[cell(x[x.group == d].iloc[0]) if (x.group == d).any() else "" for d in ds]]
                for (proto, par), x in g.groupby(["protocol", "paradigm"], sort=False)]
        lines += [f"## target at {frac:.0%} of Simultaneous's epochs", "", *grid(["protocol", "paradigm", *ds], rows), ""]
    return "\n".join(lines)


def fig_claims_map(cm, path):
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    from lpa_core.report.figures import plt, save

    c = cm[cm.paradigm == LPA_P]
    ws = [v for v in VARIANTS if v in set(c.variant)]
    ds = sorted(set(c.dataset), key=lambda d: list(SURFACES).index(d) if d in SURFACES else len(SURFACES))
    m = float(np.nanmax(np.abs(np.log10(c.ratio.clip(1e-12))))) if len(c) else 1.0
    norm = LogNorm(10 ** -max(m, 0.3), 10 ** max(m, 0.3))
    h = 1.4 + 0.45 * len(ws)
    fig, axes = plt().subplots(1, 2, figsize=(max(8.0, 2.5 + 2.2 * len(ds)), h), squeeze=False, sharey=True)
    for ax, compute in zip(axes[0], ("equal epochs", "equal compute")):
        g = c[c.compute == compute].set_index(["variant", "dataset"])
        img = np.array([[g.ratio.get((w, d), np.nan) for d in ds] for w in ws], float)
        im = ax.imshow(np.ma.masked_invalid(img), cmap="RdBu_r", norm=norm, aspect="auto")
        ax.set_facecolor("0.85")
        for (w, d), r in g.iterrows():
            i, j = ws.index(w), ds.index(d)
            dark = abs(np.log10(r.ratio)) > 0.6 * max(m, 0.3)
            ax.text(j, i, f"{r.ratio:.2g}", ha="center", va="center", fontsize=7, color="w" if dark else "k")
            if r.verdict == INCONCLUSIVE:
                ax.add_patch(Rectangle((j - .5, i - .5), 1, 1, fill=False, hatch="///", edgecolor="0.4", lw=0))
        ax.set_xticks(range(len(ds)), ds, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(ws)), ws, fontsize=8)
        ax.set_title(f"{compute} ({', '.join(sorted(set(g.protocol))) or 'not run'})", fontsize=9)
    cb = fig.colorbar(im, ax=axes[0].tolist(), label="LPA / Simultaneous, test MSE")
    ticks = [x for x in (1e-3, 1e-2, 0.1, 0.2, 0.5, 1, 2, 5, 10, 100, 1e3) if norm.vmin <= x <= norm.vmax]
    cb.set_ticks(ticks, labels=[f"{x:g}" for x in ticks])
    cb.ax.minorticks_off()
    fig.suptitle("Claims map: LPA's final-depth error ratio to Simultaneous (blue: LPA better)\n"
                 "hatched: 95 % CI straddles 1 (inconclusive); grey: not run", fontsize=9, y=1 + 0.15 / h, va="bottom")
    save(fig, path)


def fig_search(t, path):
    """Distance against rank correlation: colour = aggregation, marker = workload · protocol (hollow: overlaps show)."""
    from lpa_core.report.figures import plt, save

    fig, ax = plt().subplots(figsize=(7, 4.5))
    aggs, wps = list(dict.fromkeys(t.aggregation)), list(dict.fromkeys(zip(t.workload, t.protocol)))
    marks = "osD^vP<>Xph"
    for r in t.itertuples():
        ax.scatter(r.distance, np.nan_to_num(r.rank_corr), s=45, marker=marks[wps.index((r.workload, r.protocol)) % len(marks)],
                   facecolor="none", edgecolor=f"C{aggs.index(r.aggregation)}", lw=1.3)
    for i, a in enumerate(aggs):
        ax.scatter([], [], marker="s", color=f"C{i}", label=a)
    for i, (w, p) in enumerate(wps):
        ax.scatter([], [], marker=marks[i % len(marks)], facecolor="none", edgecolor="k", label=f"{w} · {p}")
    b = t[t.best].iloc[0]
    ax.scatter([b.distance], [np.nan_to_num(b.rank_corr)], s=400, marker="*", facecolor="none", edgecolor="r", label="best match")
    ax.annotate(b.candidate, (b.distance, np.nan_to_num(b.rank_corr)), xytext=(8, -14), textcoords="offset points", fontsize=7, color="r")
    ax.set(xlabel="distance: mean |log10(ours / paper)| over Table 1 cells", ylabel="Spearman rank corr. of paradigms (mean over surfaces)",
           title=f"Protocol search: best {b.candidate} (distance {b.distance:.2f}, rank corr. {b.rank_corr:.2f})")
    ax.title.set_fontsize(9)
    ax.set_xlim(left=0)
    ax.set_ylim(-1.1, 1.1)
    ax.grid(alpha=0.3)
    save(fig, path, legend_axes=ax)


# ----------------------------------------------------------------------------- vision and LM tracks (tables vision_fair, lm_fair)
EQ_PROTOCOLS = {"table2": "equal_epochs", "eqflops": "equal_flops"}  # run.json experiment -> protocol (else equal_epochs)
TRACK_FAIR = {  # track: (time-to-target metric (full depth, held out of training), test metrics at every depth, groups)
    "vision": ("val_acc_pct", ["test_acc_pct", "test_loss"], ["dataset", "arch"]),
    "lm": ("dev_loss", ["val_ppl", "val_loss"], ["dataset", "arch", "topology"])}


def track_fair(track, runs, amap=None):
    """The fair views of Table 2's (vision) or Table 5's (LM) runs, one tidy frame (column `view`):
    time_to_target (reach's rows: targets from Simultaneous's validation / development curve at equal epochs) and
    equal_compute (cells' rows per depth: every paradigm at equal epochs, LPA against Simultaneous trained for LPA's
    FLOPs (the eqflops runs) under equal_flops; intervals from 2 seeds; verdict of 'beats Simultaneous')."""
    ttt_metric, metrics, by = TRACK_FAIR[track]
    proto = lambda r: EQ_PROTOCOLS.get(r.exp, "equal_epochs")  # noqa: E731
    cols = lambda r: {"protocol": proto(r), **({"topology": r.topology} if "topology" in by else {})}  # noqa: E731
    lw = pd.concat([read([r], "layerwise.csv").assign(**cols(r)) for r in runs], ignore_index=True)
    sm = pd.concat([read([r], "summary.csv").assign(**cols(r)) for r in runs], ignore_index=True)
    obs = lw[lw.metric.isin(metrics)]
    if "flops" in sm:  # the training FLOPs beside each run's full depth: equal_flops should read ~1x
        obs = pd.concat([obs, sm.assign(depth=sm.n_blocks, metric="flops", value=sm.flops.astype(float))[obs.columns]], ignore_index=True)
    obs = obs.assign(ok=obs.status == "ok")
    eq = obs[obs.protocol == "equal_flops"][by].drop_duplicates()
    lpa = obs[(obs.protocol == "equal_epochs") & (obs.paradigm == LPA_P)].merge(eq, on=by)
    obs = pd.concat([obs, lpa.assign(protocol="equal_flops")], ignore_index=True)
    ec = cells(obs, [*by, "depth", "protocol", "metric"], min_seeds=2)
    side = ec.metric.map(lambda m: 1 if m in HIGHER else -1 if m in metrics else 0)
    ec["verdict"] = [verdict(lo, hi, sd) if sd and p != SIM else ""
                     for lo, hi, sd, p in zip(ec.ratio_low, ec.ratio_high, side, ec.paradigm)]
    hist = {}
    for r in runs:
        hist.setdefault((proto(r), r.paradigm), []).append(curve(r, ttt_metric, **{k: v for k, v in cols(r).items() if k != "protocol"}))
    order = lambda kv: (kv[0][0] != "equal_epochs", rank(kv[0][1]))  # noqa: E731
    hist = {k: pd.concat(v, ignore_index=True) for k, v in sorted(hist.items(), key=order)}
    ref = ("equal_epochs", SIM)
    ttt = reach(hist, ref, by, ttt_metric, ttt_metric in HIGHER) if ref in hist and not hist[ref].empty else pd.DataFrame()
    tab = pd.concat([f.assign(view=v) for f, v in ((ttt, "time_to_target"), (ec, "equal_compute")) if not f.empty], ignore_index=True)
    tab = tab[["view", *[c for c in tab.columns if c != "view"]]]
    for c in {"depth", "n_seeds", "target_epoch", "n_reached", "n_runs"} & set(tab):  # integers, blank in the other view
        tab[c] = ["" if pd.isna(v) else int(v) for v in tab[c]]
    return tab, md_track(track, ttt, ec, runs, by, ttt_metric, metrics[0], amap or {})


def md_track(track, ttt, ec, runs, by, ttt_metric, metric, amap):
    name = {"vision": "Table 2's models", "lm": "the language models"}[track]
    split = {"vision": "validation accuracy (%) on the images held out of training (val_frac)",
             "lm": "development loss on the tokens held out of training (val_frac; val_* is the corpus's reported split)"}[track]
    used = sorted({r.cfg["arch"] for r in runs if r.cfg["arch"] in amap})
    lines = [f"# Fair views of {name} (issue 12): time to target and equal compute, at every depth", "",
             f"Scale `{scale(runs)}`; {len(runs)} runs; seeds {sorted({int(r.cfg['seeds'][0]) for r in runs})}. "
             + (f"Stand-ins: {', '.join(f'`{a}` for `{amap[a]}`' for a in used)}. " if used else "")
             + f"Made by `python -m lpa_core table {track}_fair` (lpa_core/report/fair.py; rules: docs/fair.md); {stamp(runs)}", ""]
    if ttt.empty:
        lines += ["## Time to target", "", f"Left out: no Simultaneous run at equal epochs with a {ttt_metric} history "
                  "(the runs were trained with val_frac 0: no hold-out).", ""]
    else:
        text = (f"Targets per {' · '.join(by)}: Simultaneous's (equal epochs) mean {split}, full depth, at 10 / 30 / 100 % "
                "of its epochs. Cell: seeds reached / seeds; median optimizer steps, training FLOPs, seconds over those that "
                "reached it ('never' when none did).")
        lines += [md_ttt(ttt, by, "## Time to target", text).replace("\n## target", "\n### target"), ""]
    where = {"vision": "test", "lm": "the corpus's held-out split"}[track]
    lines += ["## Equal compute, every depth", "", f"`{metric}` on {where} (mean [95 % bootstrap CI over seeds]) × its ratio to "
              "Simultaneous under the same protocol (paired seeds, CI; intervals need >= 2 seeds). equal_epochs: every "
              "paradigm the same epochs (the papers' protocol); equal_flops (vision.eqflops runs): LPA against Simultaneous "
              "trained for as many analytic FLOPs as LPA. Depths shown: the quarter points (the CSV has every depth); "
              "FLOPs: mean training FLOPs per run ('–': runs made before FLOPs were counted).", ""]
    f = lambda v: "–" if pd.isna(v) else f"{v:.4g}"  # noqa: E731
    for grp, g in ec.groupby(by, sort=False):
        m = g[g.metric == metric]
        L = int(m.depth.max()) if len(m) else 0
        ds = quarters(L) if L else []
        fl = g[g.metric == "flops"].set_index(["paradigm", "protocol"])["mean"]
        rows = []
        for (par, pr), x in m.groupby(["paradigm", "protocol"], sort=False):
            ci = lambda v, lo, hi: f(v) + (f" [{f(lo)}, {f(hi)}]" if np.isfinite([lo, hi]).all() else "")  # noqa: E731
            c = {r.depth: ci(r["mean"], r.ci_low, r.ci_high) + (f" ×{ci(r.ratio, r.ratio_low, r.ratio_high)}"
                 if par != SIM and np.isfinite(r.ratio) else "") for _, r in x.iterrows()}
            rows.append([par, pr, f(fl.get((par, pr), np.nan)), *[c.get(d, "") for d in ds]])
        rows.sort(key=lambda r: (r[1] != "equal_epochs", rank(r[0])))
        lines += [f"### {' · '.join(map(str, grp))}", "", *grid(["paradigm", "protocol", "FLOPs", *[f"depth {d}" for d in ds]], rows), ""]
    return "\n".join(lines)


def track_summary(tab):
    """The report's view of a vision_fair / lm_fair CSV: (equal compute at the full depth: the reported metric and the
    training FLOPs; time to target: reached and the medians), each with its group columns."""
    g = [c for c in ("dataset", "arch", "topology") if c in tab]
    ec = tab[tab.view == "equal_compute"]
    ec = ec[ec.depth == ec.groupby(g).depth.transform("max")]
    ec = ec[ec.metric.isin([m for _, ms, _ in TRACK_FAIR.values() for m in ms[:1]] + ["flops"])]
    t = tab[tab.view == "time_to_target"]
    tcols = [*g, "target_frac", *[c for c in t if c.startswith("target_") and c not in ("target_frac", "target_epoch")],
             "protocol", "paradigm", "reached", "median_steps", "median_flops", "median_seconds"]
    return (ec[[*g, "paradigm", "protocol", "metric", "mean", "ci_low", "ci_high", "n_seeds", "ratio", "ratio_low", "ratio_high",
                "verdict"]], t[[c for c in tcols if c in t]] if len(t) else t)


# ----------------------------------------------------------------------------- command
def verdicts_html(v, esc, badge, table_html):
    """The report's verdict-per-protocol block (html.build shows it when verdicts.csv is among the tables)."""
    per = v[v.dataset != "all"].groupby(["claim", "metric", "protocol"]).verdict.agg(
        lambda x: f"{(x == REPRODUCED).sum()} of {len(x)} surfaces reproduced, {(x == NOT_REPRODUCED).sum()} not")
    v = v[v.dataset == "all"]
    protos = [p for p in PROTOCOLS if p in set(v.protocol)]

    def cell(r):
        return (f"{badge(r.verdict)}<br><span class=s>×{r.ratio:.3g} [{r.ratio_low:.3g}, {r.ratio_high:.3g}], {r.n_seeds} seeds; "
                f"{esc(per.get((r.claim, r.metric, r.protocol), ''))}</span>")
    rows = [(esc(claim), esc(met), *[cell(g[g.protocol == p].iloc[0]) if (g.protocol == p).any() else "–" for p in protos])
            for (claim, met), g in v.groupby(["claim", "metric"], sort=False)]
    return ("<h3 id=fair>Verdict per protocol (issue #12, docs/fair.md)</h3><p class=s>Geometric mean over surfaces of the ratio "
            "(final-depth test error), 95 % paired-seed bootstrap CI: reproduced when the CI lies on the claimed side of 1, "
            "not reproduced when on the other side, else inconclusive. Per surface: tables/fair/verdicts.csv.</p>"
            + table_html(["claim", "metric", *map(esc, protos)], rows))


def fair_cmd(args):
    got = gather(args.runs)
    obs = observe(got)
    runs = [r for rs in got.values() for r in rs]
    out, figs = Path(args.tables), Path(args.figures)
    out.mkdir(parents=True, exist_ok=True)
    figs.mkdir(parents=True, exist_ok=True)
    tab = cells(obs[obs.metric.isin(METRICS)])
    write(tab[tab.workload == "table1"].drop(columns="workload"), md_table1(tab, runs), out / "table1_fair.csv", out / "table1_fair.md")
    v = verdicts(obs)
    write(v, None, out / "verdicts.csv")
    ttt = time_to_target(got)
    if not ttt.empty:
        write(ttt, md_ttt(ttt), out / "time_to_target.csv", out / "time_to_target.md")
    de = depth_error(got)
    if not de.empty:
        write(de, md_depth(de), out / "depth_error.csv", out / "depth_error.md")
    cm = claims_map(tab)
    write(cm, None, out / "claims_map.csv")
    if not cm.empty:
        fig_claims_map(cm, figs / "claims_map.png")
        h, e = where_holds(cm), lr_edges(got)
        (out / "claims_map.md").write_text(md_holds(h) + ("\n" + md_edges(e) if not e.empty else "") + "\n")
        for r in e[(e.at_top + e.at_bottom) * 4 >= e.picks].itertuples():  # a quarter or more
            print(f"lr picks: {r.paradigm} ({r.protocol}): {r.at_top} of {r.picks} at the highest trial lr, {r.at_bottom} at the lowest")
        for r in h[h.reading == "holds"].itertuples():
            print(f"claims map: {r.claim}, {r.compute}: holds in {r.variant} ({r.reproduced}/{r.surfaces} surfaces)")
    s = search(obs, args.paper)
    if not s.empty:
        write(s, None, out / "protocol_search.csv")
        fig_search(s, figs / "protocol_search.png")
        b = s[s.best].iloc[0]
        print(f"protocol search: best {b.candidate}: distance {b.distance:.3f}, rank corr {b.rank_corr:.2f}")
    for r in v[v.dataset == "all"].itertuples():
        print(f"{r.claim} ({r.metric}, {r.protocol}): {r.verdict}, ratio {r.ratio:.3g} [{r.ratio_low:.3g}, {r.ratio_high:.3g}]")
    print(f"fair report -> {out}, {figs}")


def add_command(sub):
    f = sub.add_parser("fair-report", help="issue #12: protocols side by side, verdicts, time to target, claims map, protocol search")
    f.add_argument("--runs", required=True, help="the run folders of one scale (results/runs/<scale>)")
    f.add_argument("--paper", required=True, help="the published values (config/paper_results.csv)")
    f.add_argument("--tables", required=True, help="folder for the tables (results/tables/fair)")
    f.add_argument("--figures", required=True, help="folder for claims_map.png and protocol_search.png")
    f.set_defaults(func=fair_cmd)
