"""The reproduction report: one self-contained HTML file (tables, claims, figures, provenance), readable offline.

    python -m lpa_core report --tables results/tables --figures figures --runs results/runs/paper \
        --paper config/paper_results.csv --out results/report.html

It reads only what the workflow wrote (CSV and JSON tables, PNG figures, each run folder's run.json and
layerwise.csv) and the published numbers; it never loads a model. Images are embedded as base64; the file links
to nothing outside itself.

  * Tables: every entry of TABLES whose CSV is among --tables, ours beside the paper's value and the difference;
    an entry whose CSV is absent is listed as not yet run. A new reproduced table is one TableSpec in TABLES.
  * Claims: every entry of CLAIMS, stated as in the paper, marked reproduced / not reproduced / not yet run by its
    check (a function of the CSVs), with the evidence and the rule next to it. A new claim is one Claim in CLAIMS.
  * Figures: every PNG among --figures, with a caption from CAPTIONS where one is known.
  * Provenance: scale, seeds, git commit, hardware, host, versions and dates of the runs behind each table.
"""
import argparse
import base64
import datetime
import html
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lpa_core.linear_case import CASE_CLAIMS, CLAIM_RULE as CASE_RULE

LPA, ANCRE = "000_698f08884f537854.txt", "004_04e12b449531c5d6.txt"  # seed papers (paper_results.csv `source`)
PAPER_NAME = {LPA: "LPA", ANCRE: "ANCRé"}
REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not yet run"
LOWER_BETTER = {"mse", "mae", "test_loss", "val_ppl", "fid50k", "sfid"}
HIGHER_BETTER = {"test_acc_pct", "inception_score", "precision_pct", "recall_pct"}
TIDY = ["dataset", "arch", "paradigm", "metric", "mean"]  # the columns of a tidy table (report.table1's format)
KNOWN = {*TIDY, "std", "n_seeds", "n_diverged", "paper_value", "paper_text", "paper_num"}


class NotRun(Exception):
    """A claim or table whose inputs are not there (yet): the message says which."""


def esc(x):
    return html.escape(str(x), quote=True)


def fmt(x, digits=4):
    """A number for people: 4 significant digits, inf = a diverged cell, nan = no value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, str):
        return x
    if math.isinf(x):
        return "diverged"
    return f"{x:.{digits}g}"


def table_html(header, rows, cls="ev"):
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def mark(ok):
    return '<span class="ok">✓</span>' if ok else '<span class="bad">✗</span>'


# ----------------------------------------------------------------------------- inputs
@dataclass
class Run:
    dir: Path
    meta: dict

    @property
    def exp(self):
        return self.meta.get("config", {}).get("exp", "?")

    @property
    def paradigm(self):
        return self.meta.get("config", {}).get("paradigm", "?")

    @property
    def scale(self):
        """results/runs/<scale>/<exp>/<arch>/<paradigm>: the folder after `runs`."""
        parts = self.dir.resolve().parts
        return parts[parts.index("runs") + 1] if "runs" in parts[:-1] else "?"


def files_under(paths, suffixes):
    """Files among `paths` (files, or folders searched recursively) ending in one of `suffixes`, in order."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in suffixes and not f.name.startswith("."))
        elif p.is_file() and p.suffix in suffixes:
            out.append(p)
        elif not p.exists():
            raise FileNotFoundError(f"report: no such file or folder '{p}'")
    return list(dict.fromkeys(out))


class Ctx:
    """What the report reads: tables by file name, figures, run folders, the published numbers."""

    def __init__(self, tables=(), figures=(), runs=(), paper=None):
        self.tables = {}
        for f in files_under(tables, {".csv", ".json"}):
            self.tables.setdefault(f.name, f)  # the first of a name wins (pass one folder per scale)
        self.figures = sorted(files_under(figures, {".png"}), key=figure_order)
        self.runs = [Run(f.parent, json.loads(f.read_text()))
                     for f in files_under(runs, {".json"}) if f.name == "run.json"]
        for exp in {r.exp for r in self.runs}:
            scales = sorted({r.scale for r in self.runs if r.exp == exp})
            if len(scales) > 1:  # a table is built from one scale's runs: mixing them would mix provenance and seeds
                raise ValueError(f"runs: experiment '{exp}' has runs of several scales ({', '.join(scales)}); pass "
                                 "the run folders of one scale (results/runs/<scale>)")
        self.paper = pd.read_csv(paper, dtype=str, keep_default_na=False) if paper else pd.DataFrame(
            columns=["source", "table", "dataset", "arch", "paradigm", "depth", "metric", "value", "note"])
        self._cache, self.used = {}, []

    def has(self, name):
        return name in self.tables

    def table(self, name):
        """A CSV among --tables (raises NotRun without it); what a claim reads is recorded for its evidence."""
        if name not in self.tables:
            raise NotRun(f"no {name} among the tables")
        if name not in self.used:
            self.used.append(name)
        if name not in self._cache:
            self._cache[name] = pd.read_csv(self.tables[name], keep_default_na=False, na_values=["nan", "NaN", ""])
        return self._cache[name]

    def json(self, name):
        if name not in self.tables:
            return None
        return json.loads(self.tables[name].read_text())

    def runs_of(self, exp, paradigm=None):
        """Runs of experiment `exp` (run.json config.exp `exp` or `exp_<label>`), of one paradigm if given."""
        return [r for r in self.runs if (r.exp == exp or r.exp.startswith(exp + "_"))
                and (paradigm is None or r.paradigm == paradigm)]

    def layerwise(self, exp, paradigm):
        """layerwise.csv of the `exp` runs of one paradigm (raises NotRun without one)."""
        runs = [r for r in self.runs_of(exp, paradigm) if (r.dir / "layerwise.csv").is_file()]
        if not runs:
            raise NotRun(f"no {exp} run folder of {paradigm} with a layerwise.csv among the runs")
        key = f"layerwise.csv of the {exp} runs"
        if key not in self.used:
            self.used.append(key)
        return pd.concat([pd.read_csv(r.dir / "layerwise.csv") for r in runs], ignore_index=True)

    def full_depth(self, exp):
        depths = {r.meta["config"].get("depth") for r in self.runs_of(exp)} - {None}
        if len(depths) != 1:
            raise NotRun(f"no single full depth among the {exp} runs' run.json ({sorted(depths) or 'none'})")
        return int(depths.pop())


# ----------------------------------------------------------------------------- provenance
def provenance(ctx, spec):
    """{summary: one html line, detail: html table, scales: set} for the numbers of one table."""
    if spec.sidecar:
        meta = ctx.json(spec.sidecar)
        if not meta:
            return dict(summary=f"<i>no {esc(spec.sidecar)} among the tables: provenance unknown</i>", detail="",
                        scales=set(), tag="provenance unknown")
        v = meta.get("versions", {})
        items = [("scale", meta.get("scale", "?")), ("seeds", ", ".join(map(str, meta.get("seeds", [])))),
                 ("git commit", meta.get("git_commit", "?")), ("hardware", meta.get("hardware", "?")),
                 ("host", meta.get("host", "?")), ("date", meta.get("date", "?")), ("wall", f"{meta.get('wall_s', '?')} s"),
                 ("versions", ", ".join(f"{k} {x}" for k, x in v.items())), ("command", meta.get("command", "?"))]
        case = meta.get("case")
        if case:
            items.append(("settings", ", ".join(f"{k}={x}" for k, x in case.items())))
        return dict(summary=prov_line(items[:7]), detail=table_html(["key", "value"], [(esc(k), esc(x)) for k, x in items]),
                    scales={meta.get("scale", "?")},
                    tag=f"scale {meta.get('scale', '?')}, seeds {', '.join(map(str, meta.get('seeds', [])))}, "
                        f"commit {str(meta.get('git_commit', '?'))[:12]}")
    runs = ctx.runs_of(spec.exp) if spec.exp else []
    if not runs:
        return dict(summary=f"<i>no run.json of experiment '{esc(spec.exp)}' among the runs: provenance unknown</i>",
                    detail="", scales=set(), tag="provenance unknown")
    cfgs = [r.meta.get("config", {}) for r in runs]
    uniq = lambda xs: sorted({str(x) for x in xs})
    seeds = uniq(s for c in cfgs for s in c.get("seeds", []))
    scales = {r.scale for r in runs}
    starts, ends = [r.meta.get("start", "") for r in runs], [r.meta.get("end", "") for r in runs]
    status = [x.get("status") for r in runs for x in r.meta.get("runs", [])]
    items = [("scale", ", ".join(sorted(scales))), ("seeds", ", ".join(seeds)),
             ("git commit", ", ".join(uniq(r.meta.get("git_commit") for r in runs))),
             ("hardware", "; ".join(uniq(r.meta.get("hardware") for r in runs))),
             ("host", ", ".join(uniq(r.meta.get("host") for r in runs))),
             ("dates", f"{min(starts)} .. {max(ends)}"),
             ("runs", f"{len(status)} ({status.count('ok')} ok, {status.count('diverged')} diverged) in {len(runs)} jobs"),
             ("versions", "; ".join(uniq(", ".join(f"{k} {x}" for k, x in r.meta.get("versions", {}).items()) for r in runs))),
             ("epochs", ", ".join(uniq(c.get("epochs") for c in cfgs)))]
    rows = [(esc(r.paradigm), esc(r.scale), esc(",".join(map(str, r.meta["config"].get("datasets", [])))),
             esc(",".join(map(str, r.meta["config"].get("seeds", [])))), esc(r.meta["config"].get("epochs", "?")),
             esc(str(r.meta.get("git_commit", "?"))[:12] + ("-dirty" if str(r.meta.get("git_commit", "")).endswith("-dirty") else "")),
             esc(r.meta.get("hardware", "?")), esc(r.meta.get("start", "?")), esc(r.meta.get("end", "?")),
             esc(r.meta.get("wall_s", "?")), esc(", ".join(f"{s}: {[x.get('status') for x in r.meta.get('runs', [])].count(s)}"
                                                           for s in dict.fromkeys(x.get("status") for x in r.meta.get("runs", [])))),
             esc(r.dir)) for r in runs]
    detail = table_html(["paradigm", "scale", "datasets", "seeds", "epochs", "commit", "hardware", "start", "end", "wall s",
                         "status", "folder"], rows)
    commits = uniq(str(r.meta.get("git_commit", "?"))[:12] for r in runs)
    return dict(summary=prov_line(items), detail=detail, scales=scales,
                tag=f"scale {', '.join(sorted(scales))}, seeds {', '.join(seeds)}, commit {', '.join(commits)}")


def prov_line(items):
    return " · ".join(f"<b>{esc(k)}</b> {esc(v)}" for k, v in items)


# ----------------------------------------------------------------------------- tables
@dataclass
class TableSpec:
    file: str                # CSV looked up by name among --tables
    title: str
    where: str               # the paper and the place in it
    render: Callable         # (df, spec, ctx) -> html
    exp: str = ""            # runs behind it: run.json config.exp (provenance from the run folders) ...
    sidecar: str = ""        # ... or a JSON written beside the CSV
    paper: tuple = ()        # (source, table) of paper_results.csv rows, for a tidy CSV without paper_value


def tidy_paper(df, spec, ctx):
    """paper_value and its number beside each tidy row: from the CSV (report.table1 matches them), else looked up."""
    df = df.copy()
    if "paper_value" not in df.columns:
        p = ctx.paper[(ctx.paper.source == spec.paper[0]) & (ctx.paper.table == spec.paper[1])] if spec.paper else ctx.paper[:0]
        p = p.rename(columns={"value": "paper_value"})[["dataset", "arch", "paradigm", "metric", "paper_value"]]
        df = df.astype({k: str for k in ["dataset", "arch", "paradigm", "metric"]}).merge(
            p, on=["dataset", "arch", "paradigm", "metric"], how="left")
    df["paper_text"] = df.paper_value.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    df["paper_num"] = pd.to_numeric(df.paper_value, errors="coerce")
    return df


def ours(row):
    """Our mean as a number: inf where every run of the cell diverged."""
    if "n_seeds" in row and row["n_seeds"] == 0:
        return math.inf
    return float(row["mean"])


def render_tidy(df, spec, ctx):
    """Per metric: paradigms x datasets; each cell ours ± std, the paper's value and the difference (ours − paper,
    and ours / paper). Bold: our best mean in the column (metrics with a known direction)."""
    missing = [c for c in TIDY if c not in df.columns]
    if missing:
        return f"<p class=warn>{esc(spec.file)} lacks the columns {esc(', '.join(missing))}</p>"
    df = tidy_paper(df, spec, ctx)
    out = []
    for metric in dict.fromkeys(df.metric):
        t = df[df.metric == metric]
        datasets = list(dict.fromkeys(t.dataset))
        vals = t.apply(ours, axis=1)
        best = None
        if metric in LOWER_BETTER | HIGHER_BETTER:
            best = vals.groupby(t.dataset).min() if metric in LOWER_BETTER else vals[np.isfinite(vals)].groupby(t.dataset).max()
        arrow = " ↓" if metric in LOWER_BETTER else " ↑" if metric in HIGHER_BETTER else ""
        rows = []
        extra = [c for c in t.columns if c not in KNOWN and not pd.api.types.is_numeric_dtype(t[c])]  # e.g. topology
        for key, g in t.groupby(["arch", "paradigm", *extra], sort=False):
            arch, par, rest = key[0], key[1], key[2:]
            cells = [esc(" / ".join(map(str, [par, *rest])))
                     + (f"<br><span class=s>{esc(arch)}</span>" if t.arch.nunique() > 1 else "")]
            for ds in datasets:
                r = g[g.dataset == ds]
                if r.empty:
                    cells.append("")
                    continue
                r = r.iloc[0]
                v = ours(r)
                s = fmt(v)
                if math.isfinite(v) and r.get("n_seeds", 1) > 1 and not pd.isna(r.get("std", np.nan)):
                    s += f" <span class=s>± {fmt(r['std'], 2)}</span>"
                if best is not None and math.isfinite(v) and v == best.get(ds):
                    s = f"<b>{s}</b>"
                if r.get("n_diverged", 0):
                    s += f" <span class=bad>({int(r['n_diverged'])} diverged)</span>"
                if r.paper_text:
                    s += f"<br><span class=p>paper {esc(r.paper_text)}</span>"
                    if not math.isnan(r.paper_num) and math.isfinite(v):
                        d = v - r.paper_num
                        ratio = f" (×{v / r.paper_num:.2g})" if r.paper_num else ""
                        s += f"<br><span class=d>Δ {d:+.3g}{ratio}</span>"
                cells.append(s)
            rows.append(cells)
        n = sorted(set(t.n_seeds.astype(int))) if "n_seeds" in t else []
        title = ("Adaptive LPA: effective depth (blocks kept)" if metric in ("effective_depth", "effective_layers")
                 else f"{metric.upper()}{arrow}")
        out.append(f"<h4>{esc(title)} <span class=s>(mean over {'/'.join(map(str, n)) or '?'} seeds)</span></h4>"
                   + table_html([esc(" / ".join(["paradigm", *extra]))] + [esc(d) for d in datasets], rows, cls="num"))
    return "\n".join(out)


def render_plain(df, spec, ctx):
    """Every column as it is (numbers to 4 significant digits)."""
    rows = [[esc(fmt(v) if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) else v)
             for v in r] for r in df.itertuples(index=False)]
    return table_html([esc(c) for c in df.columns], rows, cls="num")


def time_to(curves, frac=1e-2):
    """{(panel, K, topology): first iteration where the seed-median loss is <= frac x its initial value, or inf}."""
    out = {}
    for key, g in curves.groupby(["panel", "K", "topology"], sort=False):
        m = g.groupby("iteration").loss.median().sort_index()
        hit = np.flatnonzero(m.values <= frac * m.values[0])
        out[key] = float(m.index[hit[0]]) if len(hit) else math.inf
    return out


def render_ancre(df, spec, ctx):
    """One row per (panel, K, topology): the convergence shape (majority over seeds), the fitted tail, the final
    loss and the iterations to 1/100 of the initial loss; the paper's statement beside 0:1 and 0:2."""
    paper = ctx.paper[(ctx.paper.source == ANCRE) & (ctx.paper.table == "sec3")]
    said = {(int(r.arch[3:]) if r.arch.startswith("lnn") else None, r.paradigm.replace("shortcut_", "")): r.value
            for r in paper.itertuples()}
    t100 = time_to(ctx.table("ancre_case.csv")) if ctx.has("ancre_case.csv") else {}
    rows = []
    for r in df.itertuples():
        p = said.get((int(r.K), str(r.topology)), "")
        agree = "" if not p else mark(p.split(",")[0].strip() == r.shape)
        tail = (f"e^(−{r.rate_per_time:.3g} t)" if r.shape == "linear" else
                f"t^({r.loglog_slope:.2g})" if r.shape == "sublinear" else esc(r.shape))
        rows.append((esc(r.panel), int(r.K), esc("ANCRé" if r.topology == "ancre" else r.topology),
                     f"{esc(r.shape)} <span class=s>({esc(r.shape_counts)})</span>", tail, fmt(r.final_loss, 3),
                     fmt(t100.get((r.panel, int(r.K), r.topology), math.nan)), esc(p), agree))
    return table_html(["panel", "K", "topology", "shape (seeds)", "fitted tail (t = GF time)", "final loss",
                       "iterations to 1/100 of L₀", "paper (Sec. 3.2)", "agrees"], rows, cls="plain")


def render_table5(df, spec, ctx):
    """Validation perplexity per (paradigm, topology) at every depth (lpa_core.lm_report's table5.csv), then the
    paper's Table 5 as the qualitative reference it is (judge-rated fluency, not re-runnable here)."""
    from lpa_core.lm_report import NO_RERUN

    t = df[df.metric == "val_ppl"]
    depths = sorted(set(t.depth.astype(int)))
    rows = []
    for (p, top), g in t.groupby(["paradigm", "topology"], sort=False):
        v = dict(zip(g.depth.astype(int), g["mean"]))
        rows.append([esc(f"{p} / {top}")] + [fmt(v.get(d, math.nan), 4) for d in depths])
    paper = ctx.paper[(ctx.paper.source == LPA) & (ctx.paper.table == "table5")]
    ref = ""
    if not paper.empty:
        layers = sorted(set(paper.depth), key=int)
        prow = [[esc(par)] + [esc(dict(zip(g.depth, g.value)).get(d, "")) for d in layers]
                for par, g in paper.groupby("paradigm", sort=False)]
        ref = ("<h4>LPA paper, Table 5 (judge-rated fluency 1-10 of a 48-layer 1B mini-Qwen; qualitative reference)</h4>"
               + table_html(["paradigm"] + [f"layer {d}" for d in layers], prow, cls="num"))
    return ("<h4>Validation perplexity ↓ at depth k (first k decoder layers + shared norm and LM head)</h4>"
            + table_html(["paradigm / topology"] + [f"depth {d}" for d in depths], rows, cls="num")
            + ref + f"<p class=s>{esc(NO_RERUN)}</p>")


TABLES = [
    TableSpec("table1.csv", "Table 1: residual MLP (6 blocks, width 10) on 2-D surfaces, test error at the final depth",
              "LPA paper, Table 1 (Sec. 5.1)", render_tidy, exp="table1"),
    TableSpec("ancre_case_summary.csv", "Case Study 3.1: convergence of deep linear nets under residual topologies",
              "ANCRé paper, Fig. 2 and Theorems 3.2, 3.3", render_ancre, sidecar="ancre_case.json"),
    TableSpec("ancre.csv", "ANCRé topologies on the residual MLP (surfaces): final-depth test error",
              "ANCRé paper, Tables 2, 4, 5 (its ablations, run here on the surfaces; the paper's numbers are LLaMA's)",
              render_tidy, exp="ancre"),
    TableSpec("table2.csv", "Table 2: ResNet-18/34 and ViT-12/24 on CIFAR-10, CIFAR-100, Fashion-MNIST",
              "LPA paper, Table 2 (Sec. 5.2); at a reduced scale small models stand in (paper_arch: the paper's model "
              "whose value is shown)", render_tidy, exp="table2", paper=(LPA, "table2")),
    TableSpec("table3.csv", "Table 3: Adaptive LPA on a 24-layer ViT", "LPA paper, Table 3 (Sec. 5.3); read from the "
              "Table 2 runs of the model standing in for ViT-24", render_tidy, exp="table2", paper=(LPA, "table3")),
    TableSpec("fig6.csv", "Fig. 6 / 9: first epoch at which LPA and Adaptive LPA beat Simultaneous's final accuracy",
              "LPA paper, Sec. 5.4 and appendix H (Fig. 6, 9)", render_tidy, exp="table2", paper=(LPA, "fig6")),
    TableSpec("sec54.csv", "Sec. 5.4: LPA over units of k blocks", "LPA paper, Sec. 5.4 (units of 2, 3, 4, 6, 12 layers)",
              render_tidy, exp="sec54", paper=(LPA, "sec5.4")),
    TableSpec("inference.csv", "Sec. 5.4: size and latency of the truncated models against depth",
              "LPA paper, Sec. 5.4 (\"1/4 of the layers: 4x smaller and faster\")", render_plain, exp="table2"),
    TableSpec("table4.csv", "Table 4: ViT-12 on ImageNet-1k, test accuracy at every depth", "LPA paper, Table 4",
              render_tidy, exp="table4", paper=(LPA, "table4")),
    TableSpec("ancre_table2.csv", "LLaMA pre-training on C4: ANCRé vs the cascade", "ANCRé paper, Table 2", render_tidy,
              exp="ancre_table2", paper=(ANCRE, "table2")),
    TableSpec("table5.csv", "Table 5 (language models): validation perplexity at every depth, per paradigm and topology",
              "LPA paper, appendix I, Table 5 (fluency of a 1B mini-Qwen: the qualitative reference); second version, "
              "Fig. 7", render_table5, exp="lm"),
]


# ----------------------------------------------------------------------------- claims
@dataclass
class Claim:
    paper: str      # LPA or ANCRE
    where: str      # place in the paper
    text: str       # the claim, as the paper makes it
    rule: str       # how the check decides
    check: Callable  # ctx -> (status, evidence html); raises NotRun when its inputs are missing


def means(t, metric, paradigms=None):
    """dataset x paradigm means of one metric of a tidy table (inf where every run diverged; NaN: not run)."""
    t = t[t.metric == metric]
    if paradigms:
        missing = [p for p in paradigms if p not in set(t.paradigm)]
        if missing:
            raise NotRun(f"no {metric} rows of {', '.join(missing)} in the table")
    t = t.assign(v=t.apply(ours, axis=1))
    return t.pivot_table(index="dataset", columns="paradigm", values="v", aggfunc="first", sort=False)


def surfaces(m, paradigms):
    """Datasets where every named paradigm has a value."""
    return [d for d in m.index if all(p in m.columns and not pd.isna(m.at[d, p]) for p in paradigms)]


def beats(table, winner, losers, metrics, by="dataset"):
    """Shared check: `winner`'s mean is better than every loser's on every `by` (lower for error metrics)."""
    def check(ctx):
        t = ctx.table(table)
        if by != "dataset":
            t = t.assign(dataset=t[by].astype(str) if isinstance(by, str) else t[list(by)].astype(str).agg(" / ".join, axis=1))
        rows, fails = [], []
        for metric in metrics:
            m = means(t, metric, [winner, *losers])
            lower = metric not in HIGHER_BETTER
            for ds in surfaces(m, [winner, *losers]):
                w = m.at[ds, winner]
                ok = all((w < m.at[ds, l]) if lower else (m.at[ds, l] < w if math.isfinite(w) else False) for l in losers)
                ok = ok and math.isfinite(w)
                fails += [] if ok else [f"{ds} ({metric})"]
                rows.append((esc(ds), esc(metric), fmt(w), *[fmt(m.at[ds, l]) for l in losers], mark(ok)))
        if not rows:
            raise NotRun(f"no {by} with all of {winner}, {', '.join(losers)}")
        ev = table_html(["surface" if by == "dataset" else "setting", "metric", esc(winner)] + [esc(l) for l in losers] + [""], rows)
        if fails:
            return NOT_REPRODUCED, f"{winner} is not better on {len(fails)} of {len(rows)}: {', '.join(fails)}." + ev
        return REPRODUCED, f"{winner} is better on all {len(rows)} (metric, {'surface' if by == 'dataset' else 'setting'}) pairs." + ev
    return check


def sequential_worst(ctx):
    t = ctx.table("table1.csv")
    others = ["simultaneous", "lpa"]
    rows, fails = [], []
    for metric in ("mse", "mae"):
        m = means(t, metric, ["sequential", *others])
        for ds in surfaces(m, ["sequential", *others]):
            s = m.at[ds, "sequential"]
            ok = all(s > m.at[ds, o] for o in others)
            rank = int((m.loc[ds].dropna() > s).sum()) + 1  # 1 = worst among every paradigm run
            fails += [] if ok else [f"{ds} ({metric})"]
            rows.append((esc(ds), metric, fmt(s), *[fmt(m.at[ds, o]) for o in others],
                         f"{rank} of {m.loc[ds].notna().sum()}", mark(ok)))
    if not rows:
        raise NotRun("no surface with sequential, simultaneous and lpa")
    ev = table_html(["surface", "metric", "sequential", *others, "rank from worst (all paradigms)", ""], rows)
    if fails:
        return NOT_REPRODUCED, f"Sequential is not the worst on {', '.join(fails)}." + ev
    return REPRODUCED, f"Sequential has the highest error on all {len(rows)} (metric, surface) pairs." + ev


def average_ratios(ctx):
    t = ctx.table("table1.csv")
    t = tidy_paper(t, TABLES[0], ctx)
    quoted = {r.metric: r.value for r in ctx.paper[(ctx.paper.source == LPA) & (ctx.paper.table == "sec5.1")].itertuples()}
    quoted.update({"mae_ratio_vs_sequential": "9.7", "mae_ratio_vs_simultaneous": "3.3"})  # Sec. 5.1 text, not in the CSV
    rows, fails = [], []
    for metric in ("mse", "mae"):
        m = means(t, metric, ["lpa", "sequential", "simultaneous"])
        pv = t[t.metric == metric].pivot_table(index="dataset", columns="paradigm", values="paper_num", aggfunc="first")
        for base in ("sequential", "simultaneous"):
            ds = [d for d in surfaces(m, ["lpa", base]) if d in pv.index and not pv.loc[d, ["lpa", base]].isna().any()]
            if not ds:
                raise NotRun("no surface with the paper's values for lpa and " + base)
            ours_r = float(np.mean([m.at[d, base] / m.at[d, "lpa"] for d in ds]))
            paper_r = float(np.mean([pv.at[d, base] / pv.at[d, "lpa"] for d in ds]))
            ok = ours_r >= paper_r / 3
            fails += [] if ok else [f"{metric} vs {base}"]
            rows.append((metric, esc(base), f"{fmt(ours_r, 4)}×", f"{fmt(paper_r, 4)}×",
                         esc(quoted.get(f"{metric}_ratio_vs_{base}", "–")) + "×", len(ds), mark(ok)))
    ev = table_html(["metric", "baseline / LPA", "ours", "paper, same surfaces", "paper quoted (6 surfaces)",
                     "surfaces", ""], rows)
    if fails:
        return NOT_REPRODUCED, f"LPA's advantage falls short (below a third of the paper's) for {', '.join(fails)}." + ev
    return REPRODUCED, "LPA's average advantage is at least a third of the paper's for all four ratios." + ev


def adaptive_fewer_layers(ctx):
    t = ctx.table("table1.csv")
    L = ctx.full_depth("table1")
    eff = means(t, "effective_depth", ["adaptive_lpa"])["adaptive_lpa"].dropna()
    m = means(t, "mse", ["adaptive_lpa", "lpa", "simultaneous"])
    rows, fails = [], []
    for ds in surfaces(m, ["adaptive_lpa", "simultaneous"]):
        ok = m.at[ds, "adaptive_lpa"] < m.at[ds, "simultaneous"]
        fails += [] if ok else [ds]
        e = eff.get(ds, math.nan)
        rows.append((esc(ds), f"{fmt(e, 3)} of {L}", f"{fmt(100 * (1 - e / L), 3)}%", fmt(m.at[ds, "adaptive_lpa"]),
                     fmt(m.at[ds, "lpa"]), fmt(m.at[ds, "simultaneous"]), mark(ok)))
    if not rows or eff.empty:
        raise NotRun("no surface with adaptive_lpa, its effective depth and simultaneous")
    mean_eff = float(eff.mean())
    ev = (f"Mean effective depth {fmt(mean_eff, 3)} of {L} blocks (reduction {fmt(100 * (1 - mean_eff / L), 3)}%). "
          + table_html(["surface", "effective depth", "reduction", "adaptive MSE", "LPA MSE", "simultaneous MSE",
                        "adaptive < simultaneous"], rows))
    if mean_eff >= L:
        return NOT_REPRODUCED, "Adaptive LPA kept every block." + ev
    if fails:
        return NOT_REPRODUCED, f"Fewer blocks, but worse than Simultaneous on {', '.join(fails)}. " + ev
    return REPRODUCED, "Fewer blocks on average and better than Simultaneous on every surface. " + ev


def lm_intermediate(ctx):
    t = ctx.table("table5.csv")
    t = t[(t.metric == "val_ppl") & (t.topology == "cascade")]
    m = t.pivot_table(index="depth", columns="paradigm", values="mean", aggfunc="first")
    if not {"lpa", "simultaneous"} <= set(m.columns):
        raise NotRun("no cascade lpa and simultaneous rows in table5.csv")
    L = int(m.index.max())
    quarters = sorted({max(1, math.ceil(L * q / 4)) for q in (1, 2, 3)} - {L})
    rows = [(d, fmt(m.at[d, "lpa"]), fmt(m.at[d, "simultaneous"]), mark(m.at[d, "lpa"] < m.at[d, "simultaneous"]))
            for d in quarters]
    ev = table_html(["depth", "LPA ppl", "Simultaneous ppl", ""], rows, cls="num")
    if all(m.at[d, "lpa"] < m.at[d, "simultaneous"] for d in quarters):
        return REPRODUCED, f"LPA's perplexity is lower at depths {quarters} of {L}." + ev
    return NOT_REPRODUCED, f"LPA's perplexity is not lower at every depth of {quarters} (of {L})." + ev


def depth_curves(ctx, paradigm):
    """dataset x depth mean test MSE over non-diverged seeds of one paradigm's table1 runs."""
    lw = ctx.layerwise("table1", paradigm)
    lw = lw[(lw.metric == "mse") & (lw.status == "ok")]
    return lw.groupby(["dataset", "depth"]).value.mean().unstack("depth")


def lpa_monotone(ctx):
    c = depth_curves(ctx, "lpa")
    rows, fails = [], []
    for ds, v in c.iterrows():
        v = v.dropna().values
        up = [i + 2 for i in range(len(v) - 1) if not v[i + 1] < v[i]]
        fails += [] if not up else [ds]
        seq = " → ".join(f'<span class="bad">{fmt(x, 3)}</span>' if i + 1 in up else fmt(x, 3) for i, x in enumerate(v))
        rows.append((esc(ds), seq, mark(not up)))
    ev = table_html(["surface", "mean test MSE at depth 1 → L (red: not below the previous depth)", ""], rows)
    if fails:
        return NOT_REPRODUCED, f"Not monotone on {', '.join(fails)}." + ev
    return REPRODUCED, f"Strictly decreasing on all {len(rows)} surfaces." + ev


def lpa_shallower(ctx):
    c = {p: depth_curves(ctx, p) for p in ("lpa", "sequential", "simultaneous")}
    rows, fails = [], []
    for ds in c["lpa"].index:
        if any(ds not in c[p].index for p in c):
            continue
        depths = [d for d in c["lpa"].columns[:-1] if all(d in c[p].columns for p in c)]  # 1..L-1
        lost = [d for d in depths if not c["lpa"].at[ds, d] < min(c["sequential"].at[ds, d], c["simultaneous"].at[ds, d])]
        fails += [f"{ds} (depth {', '.join(map(str, lost))})"] if lost else []
        rows.append((esc(ds), f"{len(depths) - len(lost)} of {len(depths)}",
                     " / ".join(fmt(c[p].at[ds, depths[0]], 3) for p in c) if depths else "–", mark(not lost)))
    if not rows:
        raise NotRun("no surface with lpa, sequential and simultaneous runs")
    ev = table_html(["surface", "depths < L where LPA is best", "depth-1 MSE lpa / seq / sim", ""], rows)
    if fails:
        return NOT_REPRODUCED, f"LPA is not below both at {'; '.join(fails)}." + ev
    return REPRODUCED, "LPA has the lowest error at every intermediate depth on every surface." + ev


def ancre_rows(ctx):
    s = ctx.table("ancre_case_summary.csv")
    return {(r.panel, int(r.K), str(r.topology)): r for r in s.itertuples()}


def need(rows, *keys):
    missing = [f"({p}) K={K} {t}" for p, K, t in keys if (p, K, t) not in rows]
    if missing:
        raise NotRun("no " + ", ".join(missing) + " in ancre_case_summary.csv")
    return [rows[k] for k in keys]


def shape_row(r):
    tail = f"rate {fmt(r.rate_per_time, 3)}/t" if r.shape == "linear" else f"log-log slope {fmt(r.loglog_slope, 3)}"
    return (esc(f"({r.panel}) K={r.K}"), esc("ANCRé" if r.topology == "ancre" else r.topology),
            f"{esc(r.shape)} <span class=s>({esc(r.shape_counts)})</span>", tail, fmt(r.final_loss, 3))


SHAPE_HEAD = ["panel", "topology", "shape (seeds)", "fitted tail", "final loss"]


def ancre_times(ctx):
    return time_to(ancre_curves(ctx))


def slower_with_depth(ctx):
    t = ancre_times(ctx)
    keys = [("a", K, "none") for K in (2, 3, 4)]
    missing = [k for k in keys if k not in t]
    if missing:
        raise NotRun(f"no panel (a) curve for K = {', '.join(str(k[1]) for k in missing)}")
    v = [t[k] for k in keys]
    ok = v[0] < v[1] < v[2]
    ev = table_html(["K", "iterations to 1/100 of L₀"], [(k[1], fmt(x)) for k, x in zip(keys, v)])
    return (REPRODUCED if ok else NOT_REPRODUCED), ("Slower with every added layer." if ok else "Not slower with every added layer.") + ev


def cascade_not_optimal(ctx):
    t = ancre_times(ctx)
    keys = [("b", 3, k) for k in ("none", "cascade", "0:1", "0:2")]
    if any(k not in t for k in keys):
        raise NotRun("no panel (b) curves of none, cascade, 0:1, 0:2")
    none, casc, s01, s02 = (t[k] for k in keys)
    checks = [("cascade faster than none", casc < none), ("0:1 faster than cascade", s01 < casc),
              ("0:2 faster than cascade", s02 < casc)]
    ev = table_html(["K = 3 topology", "iterations to 1/100 of L₀"], [(k[2], fmt(t[k])) for k in keys]) + \
        table_html(["comparison", ""], [(c, mark(ok)) for c, ok in checks])
    bad = [c for c, ok in checks if not ok]
    return (NOT_REPRODUCED, "Fails: " + "; ".join(bad) + "." + ev) if bad else (REPRODUCED, "All three hold." + ev)


def case_claim(claim):
    """A claim of lpa_core.linear_case.CASE_CLAIMS, judged there from ancre_case.csv; the evidence per pair."""
    def check(ctx):
        from lpa_core.linear_case import judge_case_claim

        j = judge_case_claim(ancre_curves(ctx), claim)
        if j["verdict"] == "not run":
            raise NotRun("a topology of the claim is missing from ancre_case.csv")
        rows = [(esc(f"{p['faster']} faster than {p['slower']}"), f"{p['seeds_faster']} of {p['seeds']}",
                 f"{fmt(p['final_faster'], 3)} vs {fmt(p['final_slower'], 3)}",
                 f"{fmt(p['it_1e-2_faster'])} vs {fmt(p['it_1e-2_slower'])}",
                 f"{fmt(p['it_1e-4_faster'])} vs {fmt(p['it_1e-4_slower'])}", mark(p["holds"])) for p in j["pairs"]]
        ev = table_html(["K = 3 comparison", "seeds lower at the end", "final loss (median)",
                         "iterations to 1e-2 L₀", "iterations to 1e-4 L₀", ""], rows)
        ok = j["verdict"] == "reproduced"
        return (REPRODUCED if ok else NOT_REPRODUCED), ("Holds." if ok else "Does not hold on the curves.") + ev
    return check


def ancre_curves(ctx):
    if not ctx.has("ancre_case.csv"):
        raise NotRun("no ancre_case.csv (the loss curves) among the tables")
    return ctx.table("ancre_case.csv")


def exp_gap_02_01(ctx):
    r01, r02 = need(ancre_rows(ctx), ("b", 3, "0:1"), ("b", 3, "0:2"))
    ok = r02.shape == "linear" and r01.shape == "sublinear"
    ev = table_html(SHAPE_HEAD, [shape_row(r01), shape_row(r02)])
    return (REPRODUCED if ok else NOT_REPRODUCED), f"0:2 {r02.shape}, 0:1 {r01.shape}." + ev


def inv_t2_01(ctx):
    (r01,) = need(ancre_rows(ctx), ("b", 3, "0:1"))
    ok = r01.shape == "sublinear" and r01.loglog_slope >= -2.5
    return (REPRODUCED if ok else NOT_REPRODUCED), f"0:1 is {r01.shape}, log-log slope {fmt(r01.loglog_slope, 3)}." + \
        table_html(SHAPE_HEAD, [shape_row(r01)])


def linear_03(ctx):
    (r,) = need(ancre_rows(ctx), ("c", 4, "0:3"))
    return (REPRODUCED if r.shape == "linear" else NOT_REPRODUCED), f"0:3 is {r.shape}." + table_html(SHAPE_HEAD, [shape_row(r)])


def pairs_not_always(ctx):
    rows = ancre_rows(ctx)
    (r03,) = need(rows, ("c", 4, "0:3"))
    pairs = [r for k, r in rows.items() if k[0] == "c" and "+" in k[2]]
    if not pairs:
        raise NotRun("no pair of shortcuts in panel (c)")
    slow = [r for r in pairs if r.shape != "linear"]
    ok = r03.shape == "linear" and bool(slow)
    ev = table_html(SHAPE_HEAD, [shape_row(r03)] + [shape_row(r) for r in pairs])
    return (REPRODUCED if ok else NOT_REPRODUCED), (f"0:3 {r03.shape}; {len(slow)} of {len(pairs)} pairs converge "
                                                    "sublinearly or stall." + ev)


def fast_12_23(ctx):
    (r,) = need(ancre_rows(ctx), ("c", 4, "1:2+2:3"))
    return (REPRODUCED if r.shape == "linear" else NOT_REPRODUCED), f"1:2+2:3 is {r.shape}." + table_html(SHAPE_HEAD, [shape_row(r)])


def ancre_on_par(ctx):
    rows = ancre_rows(ctx)
    pairs = [(("b", 3, "ancre"), ("b", 3, "0:2")), (("c", 4, "ancre"), ("c", 4, "0:3"))]
    need(rows, *[k for p in pairs for k in p])
    ev_rows, fails = [], []
    for a, ref in pairs:
        ra, rr = rows[a], rows[ref]
        ratio = ra.rate_per_time / rr.rate_per_time if rr.shape == "linear" else math.nan
        ok = ra.shape == "linear" and (rr.shape != "linear" or ratio >= 0.5)
        fails += [] if ok else [f"K={a[1]}"]
        ev_rows.append((*shape_row(ra), f"{fmt(ratio, 2)}× {esc(ref[2])}'s rate", mark(ok)))
        ev_rows.append((*shape_row(rr), "", ""))
    ev = table_html(SHAPE_HEAD + ["ANCRé rate / reference", ""], ev_rows)
    return (NOT_REPRODUCED, f"Fails at {', '.join(fails)}." + ev) if fails else (REPRODUCED, "Linear and on par at K = 3 and 4." + ev)


def topology_cells(ctx, metric="mse"):
    """(paradigm, dataset) x topology means of ancre.csv (inf where every run diverged), and the rows."""
    t = ctx.table("ancre.csv")
    if "topology" not in t.columns:
        raise NotRun("ancre.csv has no topology column")
    t = t[t.metric == metric]
    t = t.assign(v=t.apply(ours, axis=1))
    return t.pivot_table(index=["paradigm", "dataset"], columns="topology", values="v", aggfunc="first", sort=False), t


def topology_beats(winner, loser):
    """Shared check: topology variant `winner` has a lower mean test MSE than `loser` in every (paradigm, surface)."""
    def check(ctx):
        m, _ = topology_cells(ctx)
        missing = [v for v in (winner, loser) if v not in m.columns]
        if missing:
            raise NotRun(f"no {', '.join(missing)} runs in ancre.csv")
        rows, fails = [], []
        for (par, ds), r in m.iterrows():
            if pd.isna(r[winner]) or pd.isna(r[loser]):
                continue
            ok = math.isfinite(r[winner]) and r[winner] < r[loser]
            fails += [] if ok else [f"{par} / {ds}"]
            rows.append((esc(par), esc(ds), fmt(r[winner]), fmt(r[loser]), mark(ok)))
        if not rows:
            raise NotRun(f"no (paradigm, surface) with both {winner} and {loser}")
        ev = table_html(["paradigm", "surface", f"{esc(winner)} MSE", f"{esc(loser)} MSE", ""], rows)
        if fails:
            return NOT_REPRODUCED, f"{winner} is not below {loser} for {', '.join(fails)}." + ev
        return REPRODUCED, f"{winner} is below {loser} in all {len(rows)} (paradigm, surface) cells." + ev
    return check


def topology_diverges(variant):
    """Shared check: at least half of the runs of topology variant `variant` diverge."""
    def check(ctx):
        _, t = topology_cells(ctx)
        t = t[t.topology == variant]
        if t.empty:
            raise NotRun(f"no {variant} runs in ancre.csv")
        n_div = int(t.n_diverged.sum())
        n = n_div + int(t.n_seeds.sum())
        rows = [(esc(r.paradigm), esc(r.dataset), f"{int(r.n_diverged)} of {int(r.n_diverged + r.n_seeds)}", fmt(r.v))
                for r in t.itertuples()]
        ev = table_html(["paradigm", "surface", "diverged runs", "mean MSE of the others"], rows)
        ok = 2 * n_div >= n
        return (REPRODUCED if ok else NOT_REPRODUCED), f"{n_div} of {n} {variant} runs diverged." + ev
    return check


def quarter_depth_speedup(ctx):
    t = ctx.table("inference.csv")
    rows, fails = [], []
    for (ds, arch), g in t.groupby(["dataset", "arch"], sort=False):
        L = int(g.n_blocks.iloc[0])
        r = g[g.depth == max(1, L // 4)].iloc[0]
        vit = str(arch).startswith("vit")
        ok = r.size_reduction_x >= 3 and r.speedup_x >= 3
        fails += [] if ok or not vit else [f"{ds} / {arch}"]
        rows.append((esc(ds), esc(arch), f"{int(r.depth)} of {L}", f"{fmt(r.size_reduction_x, 3)}×", f"{fmt(r.speedup_x, 3)}×",
                     mark(ok) if vit else "(for information)"))
    if not any(str(a).startswith("vit") for a in t.arch):
        raise NotRun("no ViT in inference.csv (the claim is about a ViT)")
    ev = table_html(["dataset", "model", "depth", "size reduction", "speedup", ""], rows)
    if fails:
        return NOT_REPRODUCED, f"Below 3× on {', '.join(fails)}." + ev
    return REPRODUCED, "At least 3× smaller and faster on every ViT (ResNets shown for information)." + ev


def beat_sim_early(ctx):
    t = ctx.table("fig6.csv")
    piv = t.pivot_table(index=["dataset", "arch", "paradigm"], columns="metric", values="mean", aggfunc="first", dropna=False)
    if piv.empty or "epoch_to_beat_sim" not in piv.columns:
        raise NotRun("no epoch_to_beat_sim rows in fig6.csv")
    rows, fails = [], []
    for (ds, arch, par), r in piv.iterrows():
        e, n = r.get("epoch_to_beat_sim", math.nan), r.get("epochs_run", math.nan)
        ok = not math.isnan(e) and e <= n
        fails += [] if ok else [f"{ds} / {arch} / {par}"]
        rows.append((esc(ds), esc(arch), esc(par), fmt(e), fmt(n), fmt(r.get("sim_final_test_acc_pct", math.nan)), mark(ok)))
    ev = table_html(["dataset", "model", "paradigm", "epoch it beats Simultaneous", "epochs", "Simultaneous final acc.", ""], rows)
    if fails:
        return NOT_REPRODUCED, f"Never above Simultaneous's final accuracy: {', '.join(fails)}." + ev
    return REPRODUCED, "Above Simultaneous's final accuracy within the budget in every case." + ev


CLAIMS = [
    Claim(LPA, "Table 1", "LPA beats Simultaneous on every surface (MSE and MAE).",
          "Mean test error over seeds at the final depth (table1.csv): LPA below Simultaneous on every surface run, "
          "for MSE and MAE; a cell whose every run diverged counts as worst.",
          beats("table1.csv", "lpa", ["simultaneous"], ["mse", "mae"])),
    Claim(LPA, "Table 1", "Sequential is the worst of the three paradigms on every surface.",
          "Sequential's mean MSE and MAE above both Simultaneous's and LPA's on every surface run (table1.csv); the "
          "rank among every paradigm run is shown for information.", sequential_worst),
    Claim(LPA, "Sec. 5.1", "LPA reaches 113.8× smaller MSE than Sequential and 18.4× smaller than Simultaneous "
                           "(9.7× and 3.3× smaller MAE).",
          "The paper's factors are the mean over surfaces of the per-surface ratio baseline / LPA (113.8 and 18.4 "
          "come out of its Table 1 that way). Ours, on the surfaces run, against the paper's on the same surfaces: "
          "reproduced if each of the four is at least a third of the paper's.", average_ratios),
    Claim(LPA, "Sec. 5.3, Table 3", "Adaptive LPA keeps accuracy with fewer layers (here on the surfaces of Table 1).",
          "Mean effective depth over surfaces below the full depth L, and Adaptive LPA's mean MSE below "
          "Simultaneous's on every surface (Table 3: it beats Simultaneous with 5-10 of 24 layers).",
          adaptive_fewer_layers),
    Claim(LPA, "Fig. 3, Fig. 8", "Under LPA the test error decreases with every added block (depth-wise error "
                                 "decreases monotonically).",
          "Mean test MSE over seeds (the runs' layerwise.csv) strictly below the previous depth's, at every depth, on "
          "every surface.", lpa_monotone),
    Claim(LPA, "Fig. 3, Fig. 8, App. E", "LPA approximates the target at shallower depths than Sequential and "
                                         "Simultaneous.",
          "At every depth 1..L−1, LPA's mean test MSE below both Sequential's and Simultaneous's, on every surface "
          "(the runs' layerwise.csv).", lpa_shallower),
    Claim(LPA, "Table 2", "LPA beats Sequential and Simultaneous in test accuracy for ResNet-18/34 and ViT-12/24 on "
                          "CIFAR-10, CIFAR-100 and Fashion-MNIST.",
          "Mean test accuracy (table2.csv), LPA above both on every (dataset, architecture).",
          beats("table2.csv", "lpa", ["sequential", "simultaneous"], ["test_acc_pct"], by=("dataset", "arch"))),
    Claim(LPA, "Table 3", "Adaptive LPA beats Simultaneous on a 24-layer ViT with 5-10 effective layers.",
          "Mean test accuracy (table3.csv), Adaptive LPA above Simultaneous on every dataset.",
          beats("table3.csv", "adaptive_lpa", ["simultaneous"], ["test_acc_pct"])),
    Claim(LPA, "Sec. 5.4", "A model cut to one fourth of the layers is about 4× smaller and 4× faster at inference.",
          "inference.csv: at a quarter of the blocks (rounded down), the full model's parameters and measured latency "
          "divided by the truncated model's are each at least 3 (within 25% of the paper's 4×), for every ViT run (the "
          "paper's example is ViT-24; ResNets, whose first full-resolution stage dominates the latency, are shown).",
          quarter_depth_speedup),
    Claim(LPA, "Sec. 5.4, Fig. 6", "LPA and Adaptive LPA reach Simultaneous's accuracy in fewer epochs than it was trained for.",
          "fig6.csv: for every (dataset, model), the first epoch at which the mean test accuracy of LPA and of Adaptive "
          "LPA exceeds Simultaneous's final mean accuracy lies within the training budget.", beat_sim_early),
    Claim(ANCRE, "Fig. 2a", "Without residual connections, convergence slows down as the linear net grows deeper "
                            "(K = 2, 3, 4).",
          "Iterations until the seed-median loss first falls to 1/100 of its initial value (ancre_case.csv) increase "
          "with K.", slower_with_depth),
    Claim(ANCRE, "Fig. 2b", "In a 3-layer LNN the cascade beats no shortcut but is not optimal: a single 0:1 or 0:2 "
                            "shortcut converges remarkably faster.",
          "Iterations to 1/100 of the initial loss (ancre_case.csv): cascade < none, 0:1 < cascade and 0:2 < cascade.",
          cascade_not_optimal),
    *[Claim(ANCRE, c["source"].replace("ANCRé ", ""), c["statement"], CASE_RULE, case_claim(k))
      for k, c in CASE_CLAIMS.items()],
    Claim(ANCRE, "Fig. 2b, Thm 3.2, 3.3", "0:2 converges exponentially faster than 0:1 in a 3-layer LNN.",
          "Convergence shape, majority over seeds (ancre_case_summary.csv: the straighter of the ln loss vs "
          "iteration and ln loss vs ln iteration fits over the last half): 0:2 linear and 0:1 sublinear.",
          exp_gap_02_01),
    Claim(ANCRE, "Thm 3.2", "With the 0:1 shortcut the loss cannot decay faster than sublinearly (Ω(1/t²)).",
          "0:1 sublinear with a log-log tail slope of at least −2.5 (1/t² is −2).", inv_t2_01),
    Claim(ANCRE, "Sec. 3.2, Fig. 2c", "The 0:(K−1) shortcut guarantees linear convergence: 0:3 in a 4-layer LNN.",
          "0:3 (panel c) linear.", linear_03),
    Claim(ANCRE, "Fig. 2c", "In a 4-layer LNN two shortcuts do not necessarily beat the single 0:3 unless they are "
                            "placed well.",
          "0:3 linear and at least one of the pairs run not linear (sublinear, transient or a plateau).",
          pairs_not_always),
    Claim(ANCRE, "Sec. 4", "1:2+2:3 is a fast topology for a 4-layer LNN (as 0:2 is for 3 layers).",
          "1:2+2:3 (panel c) linear.", fast_12_23),
    Claim(ANCRE, "Sec. 4.2, Fig. 2b, 2c", "ANCRé learns a topology whose convergence is linear, on par with the "
                                          "optimal case.",
          "ANCRé linear at K = 3 and K = 4, with a fitted rate at least half that of the paper's optimum (0:2 at "
          "K = 3, 0:3 at K = 4).", ancre_on_par),
    Claim(ANCRE, "Table 2 (analogue)", "ANCRé's learned topology beats the standard cascade (here: the residual MLP "
                                       "on the surfaces, test MSE).",
          "Mean final-depth test MSE (ancre.csv), ancre (ingoing softmax) below cascade in every (paradigm, surface).",
          topology_beats("ancre", "cascade")),
    Claim(ANCRE, "Table 4 (analogue)", "Ingoing normalisation of the shortcut weights beats outgoing normalisation.",
          "Mean final-depth test MSE (ancre.csv), ancre below ancre_outgoing in every (paradigm, surface).",
          topology_beats("ancre", "ancre_outgoing")),
    Claim(ANCRE, "Table 4 (analogue)", "Without normalisation the learned shortcuts make training diverge.",
          "At least half of the ancre_none runs (ancre.csv) diverged.", topology_diverges("ancre_none")),
    Claim(ANCRE, "Table 5 (analogue)", "Every shortcut with fixed weights 1/j makes training diverge.",
          "At least half of the all_fixed runs (ancre.csv) diverged.", topology_diverges("all_fixed")),
    Claim(ANCRE, "Table 5 (analogue)", "Learning the shortcut topology beats learning gains on the cascade's shortcuts.",
          "Mean final-depth test MSE (ancre.csv), ancre below gains in every (paradigm, surface).",
          topology_beats("ancre", "gains")),
    *[Claim(ANCRE, where + ", authors' wiring", text + " (In the authors' code's wiring: the mix added after each "
            "block's own residual; docs/ancre-wiring.md.)", rule, check) for where, text, rule, check in [
          ("Table 2 (analogue)", "ANCRé's learned topology beats the standard cascade.",
           "Mean final-depth test MSE (ancre.csv), ancre_add below cascade in every (paradigm, surface).",
           topology_beats("ancre_add", "cascade")),
          ("Table 4 (analogue)", "Ingoing normalisation of the shortcut weights beats outgoing normalisation.",
           "Mean final-depth test MSE (ancre.csv), ancre_add below ancre_outgoing_add in every (paradigm, surface).",
           topology_beats("ancre_add", "ancre_outgoing_add")),
          ("Table 4 (analogue)", "Without normalisation the learned shortcuts make training diverge.",
           "At least half of the ancre_none_add runs (ancre.csv) diverged.", topology_diverges("ancre_none_add")),
          ("Table 5 (analogue)", "Every shortcut with fixed weights 1/j makes training diverge.",
           "At least half of the all_fixed_add runs (ancre.csv) diverged.", topology_diverges("all_fixed_add")),
          ("Table 5 (analogue)", "Learning the shortcut topology beats learning gains on the cascade's shortcuts.",
           "Mean final-depth test MSE (ancre.csv), ancre_add below gains_add (no gain into block 1) in every "
           "(paradigm, surface).", topology_beats("ancre_add", "gains_add"))]],
    Claim(ANCRE, "Table 2", "ANCRé lowers the validation perplexity of LLaMA pre-training on C4 against the cascade "
                            "(60M-1B).",
          "Mean validation perplexity (ancre_table2.csv), ANCRé below the cascade for every model size.",
          beats("ancre_table2.csv", "ancre", ["cascade"], ["val_ppl"], by="arch")),
    Claim(LPA, "App. I, Table 5", "The progressive property is preserved in the intermediate layers of a language model "
                                  "trained with LPA (12 of 48 layers still chat; Simultaneous's do not).",
          "Measurable stand-in for the judge's fluency (table5.csv, cascade): LPA's mean validation perplexity through "
          "the shared head below Simultaneous's at the intermediate quarter depths L/4, L/2, 3L/4 (both trained for the same "
          "epochs, the paper's protocol: LPA takes L+1 optimizer steps per batch).", lm_intermediate),
]


def judge(ctx, claim):
    """(status, evidence html, sources) of one claim; inputs missing -> not yet run with the reason."""
    ctx.used = []
    try:
        status, ev = claim.check(ctx)
    except NotRun as e:
        status, ev = NOT_RUN, esc(str(e)) + "."
    except Exception as e:  # a malformed input must not take the whole report down: say so beside the claim
        status, ev = NOT_RUN, f"<span class=bad>check failed: {esc(type(e).__name__)}: {esc(e)}</span>"
    return status, ev, list(ctx.used)


# ----------------------------------------------------------------------------- figures
def caption(name):
    stem = Path(name).stem
    if stem == "fig2_surfaces":
        return "LPA Figure 2: final-depth surfaces of each paradigm beside the ground truth (first seed)."
    if stem.startswith("fig3_layerwise_"):
        ds = stem[len("fig3_layerwise_"):]
        which = {"high_freq": "Figure 3", "radial_decay": "Figure 8"}.get(ds, "Figure 3 analogue")
        return f"LPA {which}: {ds}, the shared head read out after each block, and test MSE/MAE against depth."
    if stem == "fig_history_surfaces":
        return "Training curves: final-depth test MSE against epochs and optimizer steps (has every paradigm plateaued?)."
    if stem == "fig_lm_layerwise":
        return "LPA second version Figure 7 analogue: validation perplexity of a small decoder LM at every depth, per paradigm and topology."
    if stem == "fig_lm_ancre_curves":
        return "ANCRé Figure 5 analogue: full-depth validation perplexity over optimizer steps, cascade (solid) vs ANCRé in the authors' wiring (ancre_add, dashed) and the paper's (ancre, dotted)."
    if stem.startswith("ancre_fig6"):
        return "ANCRé Figure 6 analogue: the learned shortcut weights p_ij of the ANCRé runs on the surfaces."
    if stem.startswith("fig4_layerwise_"):
        return f"LPA Figure 4: {stem[len('fig4_layerwise_'):]}, test accuracy and loss of the shared head after each block (error bars: std over seeds)."
    if stem.startswith("fig5_tsne_"):
        return f"LPA Figure 5: t-SNE of the per-depth embeddings of fixed test images ({stem[len('fig5_tsne_'):]}, first seed; colour = class)."
    if stem.startswith("fig6_curves_"):
        return (f"LPA Figures 6/9: {stem[len('fig6_curves_'):]}, full-depth test accuracy against epochs, optimizer steps "
                "and training wall time (Simultaneous, LPA, Adaptive LPA).")
    if stem == "fig10_lr":
        return "LPA Figure 10: LPA's test accuracy over epochs under different learning rates."
    if stem == "fig_inference":
        return "LPA Sec. 5.4: accuracy of the truncated model at each depth, and its size and latency relative to the full model."
    if stem == "ancre_fig2":
        return "ANCRé Figure 2 (Case Study 3.1): training loss of deep linear nets under residual topologies."
    return stem


FIGURE_ORDER = ["fig2_surfaces", "fig3_layerwise_", "fig_history", "fig4_layerwise_", "fig5_tsne_", "fig6_curves_",
                "fig10_lr", "fig_inference", "ancre_fig2", "ancre_fig6"]  # by name prefix; the rest last


def figure_order(path):
    name = Path(path).name
    return next((i for i, p in enumerate(FIGURE_ORDER) if name.startswith(p)), len(FIGURE_ORDER)), name


def png_size(data):
    """(width, height) from a PNG header."""
    return (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) if data[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)


def figure_html(path):
    data = Path(path).read_bytes()
    w, h = png_size(data)
    b64 = base64.b64encode(data).decode("ascii")
    return (f'<figure id="{esc(Path(path).stem)}"><img alt="{esc(Path(path).name)}" width="{w}" height="{h}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{esc(caption(path))} <span class=s>({esc(Path(path).name)}, '
            f'{w}×{h}, {len(data) // 1024} KiB)</span></figcaption></figure>')


# ----------------------------------------------------------------------------- page
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1250px;padding:1em 1.5em;color:#1d1d1f}
h1{font-size:1.6em;margin:.2em 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}h3{margin:1.2em 0 .3em}
h4{margin:.9em 0 .3em}table{border-collapse:collapse;margin:.3em 0 .8em}td,th{border:1px solid #d4d4d4;padding:3px 7px;vertical-align:top}
th{background:#f3f3f3;text-align:left}table.num td{text-align:right}table.num td:first-child{text-align:left}
table.ev{font-size:12px}table.claims>tbody>tr>td{padding:6px 8px}.s{color:#666;font-size:11px}.p{color:#555;font-size:12px}
.d{color:#8a5a00;font-size:12px}.ok{color:#137333;font-weight:bold}.bad{color:#b3261e}.warn{background:#fff4ce;border:1px solid #e6c200;padding:.5em .8em}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:bold;white-space:nowrap}
.b-reproduced{background:#d8f3dc;color:#0b5d1e}.b-not-reproduced{background:#fde2e1;color:#8c1d18}.b-not-yet-run{background:#e8e8e8;color:#444}
.prov{font-size:12px;color:#333;background:#f8f8f8;border-left:3px solid #bbb;padding:.3em .7em;margin:.3em 0}
figure{margin:1em 0;border:1px solid #e3e3e3;padding:.5em}figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:13px;margin-top:.3em}nav a{margin-right:1em}details{margin:.2em 0 .6em}summary{cursor:pointer;color:#333}
"""


def badge(status):
    return f'<span class="badge b-{status.replace(" ", "-")}">{esc(status)}</span>'


def build(ctx, title="lpa-bench reproduction report", command=""):
    """The whole page as one string."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    present = [s for s in TABLES if ctx.has(s.file)]
    prov = {s.file: provenance(ctx, s) for s in present}
    scales = set().union(*[p["scales"] for p in prov.values()]) if prov else set()

    judged = [(c, *judge(ctx, c)) for c in CLAIMS]
    counts = {s: sum(j[1] == s for j in judged) for s in (REPRODUCED, NOT_REPRODUCED, NOT_RUN)}
    tag = {name: p["tag"] for s in present for name, p in [(s.file, prov[s.file])]}
    tag["ancre_case.csv"] = tag.get("ancre_case_summary.csv", "")
    tag["layerwise.csv of the table1 runs"] = tag.get("table1.csv", "")

    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             f"<p class=s>Built {esc(now)} by <code>{esc(command or 'python -m lpa_core report')}</code> from "
             f"{len(ctx.tables)} table files, {len(ctx.figures)} figures and {len(ctx.runs)} run folders; "
             f"scale{'s' if len(scales) != 1 else ''}: {esc(', '.join(sorted(scales)) or 'unknown')}.</p>",
             "<nav><a href='#claims'>Claims</a><a href='#tables'>Tables</a><a href='#figures'>Figures</a>"
             "<a href='#provenance'>Provenance</a></nav>"]
    if scales - {"paper"}:
        parts.append(f"<p class=warn>Numbers from the <b>{esc(', '.join(sorted(scales - {'paper'})))}</b> scale: a "
                     "reduced budget (fewer seeds, epochs or steps) for checking the pipeline; they are not the paper-scale "
                     "reproduction and the verdicts below may differ from it.</p>")
    parts.append(f"<p><b>Claims:</b> {badge(REPRODUCED)} {counts[REPRODUCED]} &nbsp; {badge(NOT_REPRODUCED)} "
                 f"{counts[NOT_REPRODUCED]} &nbsp; {badge(NOT_RUN)} {counts[NOT_RUN]}</p>")

    # claims
    parts.append("<h2 id=claims>Claims</h2><p class=s>Each claim as the paper states it, decided by code "
                 "(lpa_core/html_report.py, CLAIMS) from the CSVs; the rule and the evidence beside it.</p>")
    rows = []
    for c, status, ev, used in judged:
        src = "; ".join(f"{esc(u)}" + (f" ({esc(tag[u])})" if tag.get(u) else "") for u in used)
        rows.append((badge(status), f"<b>{esc(PAPER_NAME[c.paper])}</b><br>{esc(c.where)}",
                     f"{esc(c.text)}<br><span class=s>Rule: {esc(c.rule)}</span>",
                     ev + (f"<div class=s>From {src}.</div>" if src else "")))
    parts.append(table_html(["verdict", "paper", "claim", "evidence"], rows, cls="claims"))

    # tables
    parts.append("<h2 id=tables>Tables</h2><p class=s>Ours (mean ± std over seeds), the paper's value and the "
                 "difference Δ = ours − paper (× ours / paper).</p>")
    for s in present:
        parts.append(f"<h3 id='t-{esc(Path(s.file).stem)}'>{esc(s.title)}</h3><p class=s>{esc(s.where)} · "
                     f"{esc(s.file)}</p><div class=prov>{prov[s.file]['summary']}</div>")
        try:
            parts.append(s.render(ctx.table(s.file), s, ctx))
        except Exception as e:
            parts.append(f"<p class=warn>cannot render {esc(s.file)}: {esc(type(e).__name__)}: {esc(e)}</p>")
    missing = [s for s in TABLES if not ctx.has(s.file)]
    if missing:
        parts.append("<h3>Not yet run</h3><ul>" + "".join(
            f"<li>{esc(s.title)} <span class=s>({esc(s.where)}; no {esc(s.file)})</span></li>" for s in missing) + "</ul>")

    # figures
    parts.append("<h2 id=figures>Figures</h2>")
    parts += [figure_html(f) for f in ctx.figures] or ["<p>No figures.</p>"]

    # provenance
    parts.append("<h2 id=provenance>Provenance</h2>")
    for s in present:
        p = prov[s.file]
        parts.append(f"<h4>{esc(s.title)}</h4><div class=prov>{p['summary']}</div>"
                     + (f"<details><summary>every run folder</summary>{p['detail']}</details>" if p["detail"] else ""))
    parts.append("<h4>Inputs</h4>" + table_html(["file", "bytes", "modified (UTC)"], [
        (esc(f), os.path.getsize(f), datetime.datetime.fromtimestamp(os.path.getmtime(f), datetime.timezone.utc)
         .isoformat(timespec="seconds")) for f in [*ctx.tables.values(), *ctx.figures]]))
    parts.append("</body></html>\n")
    return "\n".join(parts), counts


def write_atomic(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def report_cmd(args):
    ctx = Ctx(args.tables, args.figures, args.runs, args.paper)
    if not ctx.tables:
        raise ValueError("tables: no CSV or JSON among " + " ".join(args.tables or ["(none given)"]))
    argv = ["report", *args.argv] if args.argv is not None else sys.argv[1:]
    page, counts = build(ctx, args.title, command="python -m lpa_core " + " ".join(argv))
    write_atomic(args.out, page)
    print(f"report -> {args.out} ({len(page) // 1024} KiB): {counts[REPRODUCED]} reproduced, "
          f"{counts[NOT_REPRODUCED]} not reproduced, {counts[NOT_RUN]} not yet run")


def add_commands(sub):
    r = sub.add_parser("report", help="the reproduction report: one self-contained HTML file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--tables", nargs="+", required=True,
                   help="table files (CSV, JSON sidecars) or folders holding them, e.g. results/tables")
    r.add_argument("--figures", nargs="*", default=[], help="PNG files or folders holding them, e.g. figures")
    r.add_argument("--runs", nargs="*", default=[],
                   help="run folders (each with run.json, layerwise.csv) or folders above them, e.g. results/runs/paper")
    r.add_argument("--paper", required=True, help="the published numbers (config/paper_results.csv)")
    r.add_argument("--out", required=True, help="the HTML file to write, e.g. results/report.html")
    r.add_argument("--title", default="lpa-bench reproduction report")
    r.set_defaults(func=report_cmd, argv=None)


def main(argv=None):
    """`python -m lpa_core.html_report ...` (the same options as `python -m lpa_core report`)."""
    p = argparse.ArgumentParser(prog="python -m lpa_core")
    add_commands(p.add_subparsers(dest="cmd", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "report":
        argv = ["report", *argv]
    args = p.parse_args(argv)
    args.argv = argv[1:]
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
