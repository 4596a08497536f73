"""The reproduction report: one self-contained HTML file (claims, tables, figures, provenance), readable offline.

    python -m lpa_core report --tables results/tables --figures figures --runs results/runs/paper \
        --paper config/paper_results.csv --out results/report.html

It reads the tables the workflow wrote (CSV, JSON sidecars), PNG figures, run folders (through the loader: each
checked against its manifest) and the published values; images are embedded, nothing outside the file is linked.
A new table is one TableSpec in TABLES; a new claim one Claim in lpa_core.report.claims.CLAIMS.
"""
import argparse
import base64
import datetime
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lpa_core.report.claims import (CLAIMS, NOT_REPRODUCED, NOT_RUN, PAPER_NAME, REPRODUCED, NotRun, esc, fmt, judge,
                                    mark, table_html, time_to)
from lpa_core.report.load import ANCRE, LPA, load, read
from lpa_core.report.tables import HIGHER, LOWER, NO_RERUN, TIDY, pivot

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
        self.runs = load(runs)  # each checked against its manifest: a damaged run stops the report, naming the file
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
        runs = self.runs_of(exp, paradigm)
        if not runs:
            raise NotRun(f"no {exp} run folder of {paradigm} with a layerwise.csv among the runs")
        key = f"layerwise.csv of the {exp} runs"
        if key not in self.used:
            self.used.append(key)
        return read(runs, "layerwise.csv")

    def full_depth(self, exp):
        depths = {r.cfg.get("depth") for r in self.runs_of(exp)} - {None}
        if len(depths) != 1:
            raise NotRun(f"no single full depth among the {exp} runs' run.json ({sorted(depths) or 'none'})")
        return int(depths.pop())


# ----------------------------------------------------------------------------- provenance
def provenance(ctx, spec):
    """{summary: one html line, detail: html table, scales, tag} of the runs (or the JSON sidecar) behind a table."""
    unknown = dict(summary="<i>provenance unknown: no {} among the {}</i>", detail="", scales=set(), tag="provenance unknown")
    if spec.sidecar:
        m = ctx.json(spec.sidecar)
        if not m:
            return {**unknown, "summary": unknown["summary"].format(esc(spec.sidecar), "tables")}
        items = [("scale", m.get("scale", "?")), ("seeds", ", ".join(map(str, m.get("seeds", [])))),
                 ("git commit", m.get("git_commit", "?")), ("hardware", m.get("hardware", "?")), ("host", m.get("host", "?")),
                 ("date", m.get("date", "?")), ("wall", f"{m.get('wall_s', '?')} s"),
                 ("versions", ", ".join(f"{k} {x}" for k, x in m.get("versions", {}).items())), ("command", m.get("command", "?")),
                 *([("settings", ", ".join(f"{k}={x}" for k, x in m["case"].items()))] if m.get("case") else [])]
        return dict(summary=prov_line(items[:7]), detail=table_html(["key", "value"], [(esc(k), esc(x)) for k, x in items]),
                    scales={m.get("scale", "?")}, tag=f"scale {items[0][1]}, seeds {items[1][1]}, commit {str(items[2][1])[:12]}")
    runs = ctx.runs_of(spec.exp) if spec.exp else []
    if not runs:
        return {**unknown, "summary": unknown["summary"].format(f"run.json of experiment '{esc(spec.exp)}'", "runs")}
    uniq = lambda key, sep=", ", short=str: sep.join(sorted({short(r.info[key]) for r in runs}))
    seeds = ", ".join(sorted({str(s) for r in runs for s in r.cfg["seeds"]}))
    status = [x["status"] for r in runs for x in r.info["runs"]]
    scales = {r.scale for r in runs}
    items = [("scale", ", ".join(sorted(scales))), ("seeds", seeds), ("git commit", uniq("git_commit")),
             ("hardware", uniq("hardware", "; ")), ("host", uniq("host")),
             ("dates", f"{min(r.info['start'] for r in runs)} .. {max(r.info['end'] for r in runs)}"),
             ("runs", f"{len(status)} ({status.count('ok')} ok, {status.count('diverged')} diverged) in {len(runs)} jobs"),
             ("versions", uniq("versions", "; ", lambda v: ", ".join(f"{k} {x}" for k, x in v.items()))),
             ("epochs", ", ".join(sorted({str(r.cfg["epochs"]) for r in runs})))]
    rows = [[esc(x) for x in (r.paradigm, r.scale, ",".join(map(str, r.cfg["datasets"])), ",".join(map(str, r.cfg["seeds"])),
                              r.cfg["epochs"], r.info["git_commit"][:12] + ("-dirty" if r.info["git_commit"].endswith("-dirty") else ""),
                              r.info["hardware"], r.info["start"], r.info["end"], r.info.get("wall_s", "?"),
                              ", ".join(f"{s}: {n}" for s, n in pd.Series([x["status"] for x in r.info["runs"]]).value_counts(sort=False).items()),
                              r.dir)] for r in runs]
    detail = table_html(["paradigm", "scale", "datasets", "seeds", "epochs", "commit", "hardware", "start", "end", "wall s",
                         "status", "folder"], rows)
    return dict(summary=prov_line(items), detail=detail, scales=scales,
                tag=f"scale {items[0][1]}, seeds {seeds}, commit {uniq('git_commit', short=lambda c: c[:12])}")


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
    """paper_value beside each tidy row: from the CSV (the table command matched it), else from the published values."""
    if "paper_value" in df.columns:
        return df.assign(paper_value=df.paper_value.map(lambda v: "" if pd.isna(v) else str(v)))
    p = ctx.paper[(ctx.paper.source == spec.paper[0]) & (ctx.paper.table == spec.paper[1])] if spec.paper else ctx.paper[:0]
    p = p.rename(columns={"value": "paper_value"})[["dataset", "arch", "paradigm", "metric", "paper_value"]]
    keys = ["dataset", "arch", "paradigm", "metric"]
    return df.astype({k: str for k in keys}).merge(p, on=keys, how="left").fillna({"paper_value": ""})


def render_tidy(df, spec, ctx):
    """Per metric: (paradigm[, topology]) x dataset, the one cell format (tables.cell) with the paper's value and
    the difference; bold: our best mean in the column for metrics with a known direction."""
    missing = [c for c in TIDY if c not in df.columns]
    if missing:
        return f"<p class=warn>{esc(spec.file)} lacks the columns {esc(', '.join(missing))}</p>"
    df = tidy_paper(df, spec, ctx)
    out = []
    for metric in dict.fromkeys(df.metric):
        t = df[df.metric == metric]
        extra = [c for c in t.columns if c not in {*TIDY, "paper_value", "paper_arch"} and not pd.api.types.is_numeric_dtype(t[c])]
        direction = "min" if metric in LOWER else "max" if metric in HIGHER else None
        rows = pivot(t, ["arch", "paradigm", *extra], "dataset", "{:.4g}", direction, html=True)
        rows = [[esc(" / ".join(map(str, r[1:2 + len(extra)]))) + (f"<br><span class=s>{esc(r[0])}</span>" if t.arch.nunique() > 1 else ""),
                 *r[2 + len(extra):]] for r in rows]
        n = "/".join(map(str, sorted(set(t.n_seeds.astype(int))))) if "n_seeds" in t else "?"
        title = ("Adaptive LPA: effective depth (blocks kept)" if metric in ("effective_depth", "effective_layers")
                 else metric.upper() + {"min": " ↓", "max": " ↑"}.get(direction, ""))
        out.append(f"<h4>{esc(title)} <span class=s>(mean over {n} seeds)</span></h4>"
                   + table_html([esc(" / ".join(["paradigm", *extra]))] + [esc(d) for d in dict.fromkeys(t.dataset)], rows, cls="num"))
    return "\n".join(out)


def render_plain(df, spec, ctx):
    """Every column as it is (numbers to 4 significant digits)."""
    rows = [[esc(fmt(v) if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) else v)
             for v in r] for r in df.itertuples(index=False)]
    return table_html([esc(c) for c in df.columns], rows, cls="num")


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
    """Validation perplexity per (paradigm, topology) at every depth (table5.csv), then the
    paper's Table 5 as the qualitative reference it is (judge-rated fluency, not re-runnable here)."""
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


def render_fair_track(df, spec, ctx):
    """vision_fair / lm_fair (lpa_core.report.fair.track_summary): equal compute at the full depth, time to target."""
    from lpa_core.report.fair import track_summary

    ec, ttt = track_summary(df)
    return ("<h4>Equal compute, full depth (ratio to Simultaneous of the same protocol; every depth: the CSV)</h4>"
            + render_plain(ec, spec, ctx) + ("<h4>Time to target</h4>" + render_plain(ttt, spec, ctx) if len(ttt) else
                                             "<p class=s>Time to target: no validation history (val_frac 0).</p>"))


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
    TableSpec("vision_fair.csv", "Vision, issue 12: time to target and equal compute (LPA vs Simultaneous at LPA's FLOPs)",
              "not in the paper (docs/fair.md)", render_fair_track, exp="table2"),
    TableSpec("lm_fair.csv", "Language models, issue 12: time to target (development loss) and equal compute",
              "not in the paper (docs/fair.md)", render_fair_track, exp="lm"),
]




# ----------------------------------------------------------------------------- figures
CAPTIONS = {  # figure name prefix -> caption ({} = the rest of the name); their order is the report's figure order
    "fig2_surfaces": "LPA Figure 2: final-depth surfaces of each paradigm beside the ground truth (first seed).",
    "fig3_layerwise_": "LPA Figure 3 (Figure 8: radial_decay): {}, the shared head read out after each block, and test "
                       "MSE/MAE against depth.",
    "fig_history": "Training curves: final-depth test MSE against epochs and optimizer steps (has every paradigm plateaued?).",
    "fig4_layerwise_": "LPA Figure 4: {}, test accuracy and loss of the shared head after each block (error bars: std over seeds).",
    "fig5_tsne_": "LPA Figure 5: t-SNE of the per-depth embeddings of fixed test images ({}, first seed; colour = class).",
    "fig6_curves_": "LPA Figures 6/9: {}, full-depth test accuracy against epochs, optimizer steps and training wall time.",
    "fig10_lr": "LPA Figure 10: LPA's test accuracy over epochs under different learning rates.",
    "fig_inference": "LPA Sec. 5.4: accuracy of the truncated model at each depth, and its size and latency relative to the full model.",
    "fig_lm_layerwise": "LPA second version Figure 7 analogue: validation perplexity of a small decoder LM at every depth.",
    "fig_lm_ancre_curves": "ANCRé Figure 5 analogue: full-depth validation perplexity over optimizer steps, cascade (solid) vs ANCRé in the authors' wiring (ancre_add, dashed) and the paper's (ancre, dotted).",
    "ancre_fig2": "ANCRé Figure 2 (Case Study 3.1): training loss of deep linear nets under residual topologies.",
    "ancre_fig6": "ANCRé Figure 6 analogue: the learned shortcut weights p_ij of the ANCRé runs.",
}


def caption(name):
    stem = Path(name).stem
    return next((c.format(stem[len(p):]) for p, c in CAPTIONS.items() if stem.startswith(p)), stem)


def figure_order(path):
    name = Path(path).name
    return next((i for i, p in enumerate(CAPTIONS) if name.startswith(p)), len(CAPTIONS)), name


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
.b-reproduced{background:#d8f3dc;color:#0b5d1e}.b-not-reproduced{background:#fde2e1;color:#8c1d18}.b-not-yet-run{background:#e8e8e8;color:#444}.b-inconclusive{background:#fff3cd;color:#6b4e00}
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
                 "(lpa_core/report/claims.py, CLAIMS) from the CSVs; the rule and the evidence beside it.</p>")
    rows = []
    for c, status, ev, used in judged:
        src = "; ".join(f"{esc(u)}" + (f" ({esc(tag[u])})" if tag.get(u) else "") for u in used)
        rows.append((badge(status), f"<b>{esc(PAPER_NAME[c.paper])}</b><br>{esc(c.where)}",
                     f"{esc(c.text)}<br><span class=s>Rule: {esc(c.rule)}</span>",
                     ev + (f"<div class=s>From {src}.</div>" if src else "")))
    parts.append(table_html(["verdict", "paper", "claim", "evidence"], rows, cls="claims"))
    if ctx.has("verdicts.csv"):  # the fair verdicts (lpa_core.report.fair): one per protocol
        from lpa_core.report.fair import verdicts_html

        parts.append(verdicts_html(ctx.table("verdicts.csv"), esc, badge, table_html))
    if ctx.has("claims_map.csv"):  # where each claim holds across the workload variants
        from lpa_core.report.fair import holds_html

        parts.append(holds_html(ctx.table("claims_map.csv"), esc, table_html))

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


def report_cmd(args):
    from lpa_core import io

    ctx = Ctx(args.tables, args.figures, args.runs, args.paper)
    if not ctx.tables:
        raise ValueError("tables: no CSV or JSON among " + " ".join(args.tables or ["(none given)"]))
    page, counts = build(ctx, args.title, command="python -m lpa_core " + " ".join(sys.argv[1:]))
    io._atomic(args.out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    print(f"report -> {args.out} ({len(page) // 1024} KiB): {counts[REPRODUCED]} reproduced, "
          f"{counts[NOT_REPRODUCED]} not reproduced, {counts[NOT_RUN]} not yet run")


def add_command(sub):
    r = sub.add_parser("report", help="the reproduction report: one self-contained HTML file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--tables", nargs="+", required=True,
                   help="table files (CSV, JSON sidecars) or folders holding them, e.g. results/tables")
    r.add_argument("--figures", nargs="*", default=[], help="PNG files or folders holding them, e.g. figures")
    r.add_argument("--runs", nargs="*", default=[], help="run folders or folders above them, e.g. results/runs/paper")
    r.add_argument("--paper", required=True, help="the published values (config/paper_results.csv)")
    r.add_argument("--out", required=True, help="the HTML file to write, e.g. results/report.html")
    r.add_argument("--title", default="lpa-bench reproduction report")
    r.set_defaults(func=report_cmd)
