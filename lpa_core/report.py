"""Tables and figures of the surface track, from the run folders' CSVs and grid.npz only (never from a model).

    python -m lpa_core table1  --runs DIR [DIR ...] --paper config/paper_results.csv --out-csv T.csv --out-md T.md
    python -m lpa_core figures --runs DIR [DIR ...] --outdir figures

Table 1 is the test error at the final depth, mean and std over seeds, beside the LPA paper's value (matched on
surface, paradigm, metric and architecture label `resmlp{depth}_w{width}`, so a changed model shows no paper
value). A diverged run is counted in `n_diverged` and left out of the mean; a cell whose every run diverged reads
`diverged`.
"""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from lpa_core import ancre_results

PAPER_SOURCE = "000_698f08884f537854.txt"  # the LPA paper, first version (Table 1)


def read_runs(dirs, name):
    """Concatenate `name` (a CSV) of every run folder; a missing file is an error naming it."""
    frames = []
    for d in dirs:
        path = Path(d) / name
        if not path.is_file():
            raise FileNotFoundError(f"runs: no {name} in '{d}'")
        frames.append(pd.read_csv(path, keep_default_na=False, na_values=["nan", "NaN", ""]))
    return pd.concat(frames, ignore_index=True)


def run_json(d):
    """A run folder's run.json (config, provenance, per-run status); a missing one is an error naming the folder."""
    path = Path(d) / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"runs: no run.json in '{d}'")
    return json.loads(path.read_text())


def provenance(dirs):
    """One line per distinct (scale-defining) run provenance: commit, hardware, date range."""
    info = [run_json(d) for d in dirs]
    commits = sorted({i["git_commit"] for i in info})
    hardware = sorted({i["hardware"] for i in info})
    return {"commits": commits, "hardware": hardware, "start": min(i["start"] for i in info),
            "end": max(i["end"] for i in info), "config": info[0]["config"]}


def arch_label(cfg):
    return f"{cfg['arch']}{cfg['depth']}_w{cfg['width']}"


def table1(dirs, paper_csv):
    """Tidy Table 1: dataset, arch, paradigm, metric, mean, std, n_seeds, n_diverged, paper_value."""
    lw, summ, prov = read_runs(dirs, "layerwise.csv"), read_runs(dirs, "summary.csv"), provenance(dirs)
    keys = ["dataset", "arch", "paradigm", "metric"]
    final = lw[lw.depth == lw.groupby(["dataset", "paradigm"]).depth.transform("max")]
    eff = summ[summ.paradigm == "adaptive_lpa"].assign(metric="effective_depth", value=summ.effective_depth)
    obs = pd.concat([final[keys + ["value", "status"]], eff[keys + ["value", "status"]]], ignore_index=True)
    obs["ok"] = obs.status == "ok"
    tab = obs.groupby(keys, sort=False).apply(lambda g: pd.Series({
        "mean": g.value[g.ok].mean(), "std": g.value[g.ok].std(), "n_seeds": int(g.ok.sum()),
        "n_diverged": int((~g.ok).sum())}), include_groups=False).reset_index()
    tab[["n_seeds", "n_diverged"]] = tab[["n_seeds", "n_diverged"]].astype(int)
    paper = pd.read_csv(paper_csv, dtype=str)
    paper = paper[(paper.source == PAPER_SOURCE) & (paper.table == "table1") & (paper.arch == arch_label(prov["config"]))]
    paper = paper.rename(columns={"value": "paper_value"})[["dataset", "paradigm", "metric", "paper_value"]]
    tab = tab.merge(paper, on=["dataset", "paradigm", "metric"], how="left")
    tab["metric"] = pd.Categorical(tab.metric, ["mse", "mae", "effective_depth"])
    tab = tab.sort_values("metric", kind="stable").astype({"metric": str})
    return tab.reset_index(drop=True), prov


def cell(row, fmt="{:.4f}"):
    if row.n_seeds == 0:
        return "diverged"
    s = fmt.format(row["mean"]) + (" ± " + fmt.format(row["std"]) if row.n_seeds > 1 else "")
    if row.n_diverged:
        s += f" ({row.n_diverged} diverged)"
    return s


def markdown(tab, prov, scale=None):
    """Readable Table 1: per metric, paradigms x surfaces, 'ours (paper)', best mean per column in bold."""
    cfg = prov["config"]
    lines = [f"# Table 1: residual MLP ({cfg['depth']} blocks, width {cfg['width']}) on 2-D surfaces, test error at the final depth",
             "",
             f"Reproduced: mean ± std over seeds {cfg['seeds']}{f' (scale `{scale}`)' if scale else ''}, "
             f"{cfg['epochs']} epochs, batch {cfg['batch_size']}, Adam lr {cfg['lr']} (cosine), {cfg['n_train']} train / "
             f"{cfg['n_test']} test points on [{cfg['domain'][0]}, {cfg['domain'][1]}]^2. In parentheses: the LPA paper's "
             "Table 1 (blank where it has no value). **Bold**: best reproduced mean in the column.",
             "",
             f"Made by `python -m lpa_core table1` from run CSVs; commit(s) {', '.join(prov['commits'])}; "
             f"hardware {'; '.join(prov['hardware'])}; runs {prov['start']} .. {prov['end']}.", ""]
    for metric in ["mse", "mae", "effective_depth"]:
        t = tab[tab.metric == metric]
        if t.empty:
            continue
        datasets = list(dict.fromkeys(t.dataset))
        best = t[t.n_seeds > 0].groupby("dataset")["mean"].min() if metric != "effective_depth" else None
        lines += [f"## {metric.upper() if metric != 'effective_depth' else 'Adaptive LPA: effective depth (blocks kept)'}", "",
                  "| paradigm | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
        for par, g in t.groupby("paradigm", sort=False):
            cells = []
            for d in datasets:
                row = g[g.dataset == d]
                if row.empty:
                    cells.append("")
                    continue
                row = row.iloc[0]
                c = cell(row, {"mse": "{:.2e}", "mae": "{:.4f}"}.get(metric, "{:.2f}"))
                if best is not None and row.n_seeds > 0 and row["mean"] == best[d]:
                    c = f"**{c}**"
                if isinstance(row.paper_value, str):
                    c += f" ({row.paper_value})"
                cells.append(c)
            lines.append(f"| {par} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def table1_cmd(args):
    tab, prov = table1(args.runs, args.paper)
    from lpa_core import io

    scale = Path(args.runs[0]).parts[-4] if len(Path(args.runs[0]).parts) >= 4 else None
    io.write_csv(args.out_csv, list(tab.columns), tab.itertuples(index=False))
    io._atomic(args.out_md, lambda tmp: Path(tmp).write_text(markdown(tab, prov, scale) + "\n"))
    print(markdown(tab, prov, scale))


########################################################################################################################
# ANCRé table: topology variants on the residual MLP, with the ANCRé paper's LLaMA numbers as a reference only

ANCRE_SOURCE = "004_04e12b449531c5d6.txt"
# variant -> (ANCRé paper table, paradigm label there): the language-model result each surface ablation mirrors
ANCRE_REFERENCE = {"cascade": ("table2", "cascade"), "ancre": ("table4", "ancre_norm_ingoing"),
                   "ancre_outgoing": ("table4", "ancre_norm_outgoing"), "ancre_none": ("table4", "ancre_norm_none"),
                   "all_fixed": ("table5", "all_fixed_1_over_j"), "gains": ("table5", "learnable_cascade")}


def topology_variant(cfg):
    """A run's topology variant (workflow/rules/common.smk TOPOLOGY_VARIANTS) from its resolved config."""
    return ancre_results.variant(cfg)


def ancre_table(dirs, paper_csv):
    """Tidy: dataset, arch, paradigm, topology, metric, mean, std, n_seeds, n_diverged at each model's full depth
    (surfaces: test MSE/MAE; vision: test accuracy % and loss). The variant comes from each run's run.json, so a
    cascade run of another experiment (Table 2's, for the vision models) counts as the cascade row."""
    frames = [read_runs([d], "layerwise.csv").assign(
        topology=topology_variant(run_json(d)["config"])) for d in dirs]
    lw = pd.concat(frames, ignore_index=True)
    final = lw[lw.depth == lw.groupby("arch").depth.transform("max")].assign(ok=lambda d: d.status == "ok")
    keys = ["dataset", "arch", "paradigm", "topology", "metric"]
    tab = final.groupby(keys, sort=False).apply(lambda g: pd.Series({
        "mean": g.value[g.ok].mean(), "std": g.value[g.ok].std(), "n_seeds": int(g.ok.sum()),
        "n_diverged": int((~g.ok).sum())}), include_groups=False).reset_index()
    tab.insert(4, "wiring", tab.topology.map(ancre_results.variant_wiring))
    paper = pd.read_csv(paper_csv, dtype=str)
    paper = paper[paper.source == ANCRE_SOURCE]
    ref = [{"topology": v, "model": r.arch, "paper_table": t, "val_ppl": r.value}
           for v, (t, label) in ANCRE_REFERENCE.items()
           for r in paper[(paper.table == t) & (paper.paradigm == label) & paper.arch.isin(["llama130m", "llama350m"])].itertuples()]
    return tab.astype({"n_seeds": int, "n_diverged": int}), pd.DataFrame(ref), provenance(dirs)


def ancre_markdown(tab, ref, prov):
    cfg = prov["config"]
    lines = ["# ANCRé topologies: the residual MLP on surfaces (final-depth test MSE), the vision models (accuracy)", "",
             f"Mean ± std over seeds {cfg['seeds']}; {cfg['epochs']} epochs, Adam lr {cfg['lr']}, tau {cfg['tau']}; the "
             "training recipe of Table 1. Variants: `cascade` (standard residuals), `ancre` (all shortcuts, learnable, "
             "ingoing softmax), `ancre_outgoing`, `ancre_none` (unnormalised: the paper's Table 4 ablation), `all_fixed` "
             "(all shortcuts, fixed 1/j: Table 5), `gains` (learnable gains on the cascade only: Table 5), in the paper's "
             "wiring (the mix replaces each block's own shortcut); suffixed `_add`, the same in the authors' code's wiring "
             "(each block keeps its residual and the mix is added after it; `gains_add`: no gain into block 1; see "
             "docs/ancre-wiring.md). `cascade` is the same under both. "
             "**Bold**: best mean per column within a paradigm. LPA x cascade is not re-run here: it is Table 1's `lpa` "
             "row (same recipe; a run's numbers do not depend on the group it trains in).", "",
             f"Made by `python -m lpa_core ancre-table`; commit(s) {', '.join(prov['commits'])}; hardware "
             f"{'; '.join(prov['hardware'])}; runs {prov['start']} .. {prov['end']}.", ""]
    t = tab[tab.metric == "mse"]
    datasets = list(dict.fromkeys(t.dataset))
    for par, g in t.groupby("paradigm", sort=False):
        best = g[g.n_seeds > 0].groupby("dataset")["mean"].min()
        lines += [f"## {par}", "", "| topology | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
        for topo, h in g.groupby("topology", sort=False):
            cells = []
            for d in datasets:
                row = h[h.dataset == d].iloc[0]
                c = cell(row, "{:.2e}")
                cells.append(f"**{c}**" if row.n_seeds > 0 and row["mean"] == best[d] else c)
            lines.append(f"| {topo} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += vision_ancre_markdown(tab)
    lines += lm_ancre_markdown(tab)
    lines += ordering_markdown(tab)
    if not ref.empty:
        wide = ref.pivot_table(index="topology", columns="model", values="val_ppl", aggfunc="first").reindex(
            [v for v in ANCRE_REFERENCE if v in set(ref.topology)])
        lines += ["## Reference only: the ANCRé paper's LLaMA validation perplexity on C4 (not re-run here)", "",
                  "The paper's numbers for the language models its ablations were run on (Tables 2, 4, 5), beside the "
                  "surface-scale variant that mirrors each; they are what these runs are read against, not what they "
                  "reproduce.", "", "| topology | " + " | ".join(wide.columns) + " |", "|---" * (len(wide.columns) + 1) + "|"]
        lines += [f"| {v} | " + " | ".join(str(x) for x in row) + " |" for v, row in wide.iterrows()]
        lines.append("")
    return "\n".join(lines)


def lm_ancre_markdown(tab):
    """The language-model rows: per paradigm, topology x model, full-depth validation perplexity."""
    return topology_columns(tab[tab.metric == "val_ppl"], "## Language models: full-depth validation perplexity",
                            "The decoder of the LM track (lpa_core.lm) under its recipe; cascade vs ANCRé in both wirings "
                            "(the LM default is the authors': `add`, tau 0.01). **Bold**: best mean per column within a "
                            "paradigm.", higher=False)


def ordering_markdown(tab):
    """The paper's LLaMA ordering judged per (model, paradigm, wiring) (lpa_core.ancre_results.paper_ordering)."""
    rows = ancre_results.paper_ordering(tab)
    if not rows:
        return []
    lines = ["## The paper's LLaMA ordering, per wiring", "",
             "ANCRé Tables 2, 4, 5 (LLaMA-130M/350M on C4): ANCRé best and the cascade worst of {ancre, ancre_outgoing, "
             "cascade} (24.48 < 25.03 < 25.07 at 130M); unnormalised coefficients (`ancre_none`) diverge. Checked on "
             "every cell (surface, dataset or corpus) of the rows above, per wiring (`add` reads `ancre_add`, "
             "`ancre_outgoing_add`, `ancre_none_add` against the shared cascade; `ancre_outgoing` joins where it was "
             "run); for `none diverges` the count is of runs. lpa_core/ancre_results.py.", "",
             "| model | paradigm | wiring | metric | ANCRé best | cascade worst | none diverges |", "|---" * 7 + "|"]
    by = {}
    for r in rows:
        by.setdefault((r["arch"], r["paradigm"], r["wiring"], r["metric"]), {})[r["check"]] = r
    for (arch, par, w, metric), c in by.items():
        fmt_ = lambda r: f"{r['verdict']} ({r['holds_in']} of {r['cells']})" if r["cells"] else "not run"  # noqa: E731
        lines.append(f"| {arch} | {par} | {w} | {metric} | {fmt_(c['ancre_best'])} | {fmt_(c['cascade_worst'])} | "
                     f"{fmt_(c['none_diverges'])} |")
    return lines + [""]


def vision_ancre_markdown(tab):
    """The vision rows: per paradigm, topology x (dataset, arch), full-depth test accuracy (%)."""
    return topology_columns(tab[tab.metric == "test_acc_pct"], "## Vision models: full-depth test accuracy (%)",
                            "Cascade vs ANCRé on the ResNet/ViT of the vision track, trained with the vision recipe "
                            "(lpa_core.vision.RECIPES and the scale's config; a cascade row is the Table 2 run of the same "
                            "recipe). The ANCRé paper has no image-classification numbers to set beside these. **Bold**: "
                            "best mean per column within a paradigm.", higher=True)


def topology_columns(t, heading, intro, higher):
    """Per paradigm, one row per topology and one column per (dataset, arch) of the tidy rows t (one metric)."""
    if t.empty:
        return []
    cols = list(dict.fromkeys(zip(t.dataset, t.arch)))
    lines = [heading, "", intro, ""]
    for par, g in t.groupby("paradigm", sort=False):
        means = g[g.n_seeds > 0].groupby(["dataset", "arch"])["mean"]
        best = means.max() if higher else means.min()
        lines += [f"### {par}", "", "| topology | " + " | ".join(f"{a} ({d})" for d, a in cols) + " |",
                  "|---" * (len(cols) + 1) + "|"]
        for topo, h in g.groupby("topology", sort=False):
            cells = []
            for d, a in cols:
                row = h[(h.dataset == d) & (h.arch == a)]
                if row.empty:
                    cells.append("")
                    continue
                row = row.iloc[0]
                c = cell(row, "{:.2f}")
                cells.append(f"**{c}**" if row.n_seeds > 0 and row["mean"] == best[d, a] else c)
            lines.append(f"| {topo} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def ancre_table_cmd(args):
    from lpa_core import io

    tab, ref, prov = ancre_table(args.runs, args.paper)
    io.write_csv(args.out_csv, list(tab.columns), tab.itertuples(index=False))
    io._atomic(args.out_md, lambda tmp: Path(tmp).write_text(ancre_markdown(tab, ref, prov) + "\n"))
    print(ancre_markdown(tab, ref, prov))


# ANCRé Fig 6: heatmap of the learned shortcut coefficients (coeffs.csv of the topology runs)
PANEL_KEYS = ["exp", "arch", "paradigm", "topology", "dataset"]


def heatmap(csv_paths, out_png, floor=-10.0):
    """Fig 6 of the ANCRe paper from coeffs.csv files (or run folders holding one): one panel per (exp, arch,
    paradigm, topology, dataset), p averaged over the seeds that did not diverge, shown as log(p_ij / max_i p_ij)
    (|p| for unnormalised coefficients) with rows j, columns i and the upper triangle (i >= j) masked (white);
    absent shortcuts (p = 0: cascade, gains) are grey; the colour scale runs from max(floor, smallest value) to 0."""
    import matplotlib.pyplot as plt

    from lpa_core import io

    frames = []
    for path in map(Path, csv_paths):
        f = path / "coeffs.csv" if path.is_dir() else path
        if not f.is_file():
            raise FileNotFoundError(f"runs: no coeffs.csv at '{path}'")
        frames.append(pd.read_csv(f))
    df = pd.concat(frames, ignore_index=True)
    panels = []
    for key, g in df.groupby(PANEL_KEYS, sort=False):
        L = int(g.j.max())
        P = np.full((L, L), np.nan)
        for (j, i), v in g.groupby(["j", "i"]).p.mean().items():  # mean skips NaN (diverged runs)
            P[j - 1, i] = abs(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            M = np.log(P / np.nanmax(np.where(np.isnan(P), -np.inf, P), axis=1, keepdims=True))
        ok = g.groupby("seed").p.apply(lambda s: s.notna().all())
        panels.append((key, M, np.triu(np.ones((L, L), bool), k=1), int(ok.sum()), len(ok)))
    finite = [M[np.isfinite(M)] for _, M, *_ in panels]
    lo = min((v.min() for v in finite if v.size), default=-1.0)
    vmin = max(floor, min(lo, -1e-3))
    n = len(panels)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    im = None
    for k, (ax, ((exp, arch, par, topo, ds), M, upper, n_ok, n_seeds)) in enumerate(zip(axes.flat, panels)):
        L = M.shape[0]
        im = ax.imshow(np.ma.masked_where(~np.isfinite(M), np.maximum(M, vmin)), cmap=cmap, vmin=vmin, vmax=0)
        ax.imshow(np.where(upper, 1.0, np.nan), cmap="gray", vmin=0, vmax=1)  # white upper triangle
        ax.set_xticks(range(L), range(L))
        ax.set_yticks(range(L), range(1, L + 1))
        if k // cols == rows - 1 or k + cols >= n:
            ax.set_xlabel("i (from)")
        if k % cols == 0:
            ax.set_ylabel("j (into)")
        where = ds if arch == "resmlp" else f"{arch} on {ds}"
        ax.set_title(f"{exp}: {where}\n{par}, {topo} ({n_ok}/{n_seeds} seeds)", fontsize=8)
        if n_ok == 0:
            ax.text(0.5, 0.5, "diverged", transform=ax.transAxes, ha="center", va="center")
    for ax in axes.flat[n:]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label=r"$\log(p_{ij} / \max_i p_{ij})$")
    io._atomic(out_png, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def heatmap_cmd(args):
    import matplotlib

    matplotlib.use("Agg")
    heatmap(args.runs, args.out, floor=args.floor)


########################################################################################################################
# figures


def load_grids(dirs):
    """{paradigm: dict(pred [R, L, n, n], truth [R, n, n], datasets [R], seeds [R], status [R], axis [n])}."""
    out = {}
    for d in dirs:
        z = np.load(Path(d) / "grid.npz")
        par = run_json(d)["config"]["paradigm"]
        out[par] = {k: z[k] for k in z.files}
    return out


def first_run(g, dataset):
    """Index of the first non-diverged run of `dataset` in a grid (else the first run)."""
    idx = np.flatnonzero(g["datasets"] == dataset)
    ok = [i for i in idx if g["status"][i] == "ok"]
    return (ok or list(idx))[0]


def fig2(grids, path):
    """Ground truth beside each paradigm's final-depth surface, one row per surface (first seed)."""
    import matplotlib.pyplot as plt

    pars = list(grids)
    datasets = list(dict.fromkeys(grids[pars[0]]["datasets"]))
    ext = [grids[pars[0]]["axis"][0], grids[pars[0]]["axis"][-1]] * 2
    fig, axes = plt.subplots(len(datasets), len(pars) + 1, figsize=(2.1 * (len(pars) + 1), 2.1 * len(datasets)), squeeze=False)
    for r, ds in enumerate(datasets):
        g0 = grids[pars[0]]
        truth = g0["truth"][first_run(g0, ds)]
        lim = dict(vmin=truth.min(), vmax=truth.max(), origin="lower", extent=ext, cmap="viridis")
        axes[r, 0].imshow(truth, **lim)
        axes[r, 0].set_ylabel(ds, fontsize=9)
        for c, par in enumerate(pars, start=1):
            g = grids[par]
            i = first_run(g, ds)
            axes[r, c].imshow(g["pred"][i, -1].astype(np.float32), **lim)
            mse = float(np.mean((g["pred"][i, -1].astype(np.float32) - truth) ** 2))
            axes[r, c].set_title(f"grid mse {mse:.3g}" + (" DIVERGED" if g["status"][i] != "ok" else ""), fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([]), ax.set_yticks([])
    for c, name in enumerate(["ground truth"] + pars):
        axes[0, c].annotate(name, (0.5, 1.25), xycoords="axes fraction", ha="center", fontsize=10, weight="bold")
    fig.suptitle("Final-depth surfaces (first seed); colour scale of the ground truth per row", y=1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def fig3(grids, lw, dataset, path):
    """Per-depth predicted surfaces for every paradigm (rows) and depth (columns), then per-depth MSE and MAE."""
    import matplotlib.pyplot as plt

    pars = list(grids)
    L = grids[pars[0]]["pred"].shape[1]
    g0 = grids[pars[0]]
    truth = g0["truth"][first_run(g0, dataset)]
    ext = [g0["axis"][0], g0["axis"][-1]] * 2
    lim = dict(vmin=truth.min(), vmax=truth.max(), origin="lower", extent=ext, cmap="viridis")
    fig = plt.figure(figsize=(1.5 * (L + 1), 1.35 * len(pars) + 3.2))
    gs = fig.add_gridspec(len(pars) + 1, L + 1, height_ratios=[1] * len(pars) + [1.9])
    for r, par in enumerate(pars):
        g = grids[par]
        i = first_run(g, dataset)
        for d in range(L):
            ax = fig.add_subplot(gs[r, d])
            ax.imshow(g["pred"][i, d].astype(np.float32), **lim)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"depth {d + 1}", fontsize=9)
            if d == 0:
                ax.set_ylabel(par, fontsize=8)
        if r == 0:
            ax = fig.add_subplot(gs[r, L])
            ax.imshow(truth, **lim)
            ax.set_title("truth", fontsize=9)
            ax.set_xticks([]), ax.set_yticks([])
    half = (L + 1) // 2
    sub = lw[(lw.dataset == dataset) & (lw.status == "ok")]
    for k, (metric, span) in enumerate([("mse", slice(0, half)), ("mae", slice(half, L + 1))]):
        ax = fig.add_subplot(gs[len(pars), span])
        for par in pars:
            s = sub[(sub.paradigm == par) & (sub.metric == metric)].groupby("depth").value
            m = s.mean()
            ax.plot(m.index, m.values, marker="o", ms=3, label=par)
            ax.fill_between(m.index, s.min().values, s.max().values, alpha=0.15)
        ax.set_yscale("log")
        ax.set_xlabel("depth (blocks used)")
        ax.set_ylabel(f"test {metric.upper()}")
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    fig.suptitle(f"{dataset}: the shared head read out after each block (first seed); curves: mean over seeds, band min..max")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def fig_history(hist, path):
    """Final-depth test MSE against epochs and against optimizer steps, one panel per surface (mean over seeds):
    the evidence that every paradigm has plateaued at the chosen budget."""
    import matplotlib.pyplot as plt

    hist = hist[hist.metric == "test_mse"]
    datasets = list(dict.fromkeys(hist.dataset))
    fig, axes = plt.subplots(2, len(datasets), figsize=(3 * len(datasets), 5.6), squeeze=False)
    for c, ds in enumerate(datasets):
        for par, g in hist[hist.dataset == ds].groupby("paradigm", sort=False):
            m = g.groupby("epoch")[["value", "steps"]].mean()
            axes[0, c].plot(m.index, m.value, label=par)
            axes[1, c].plot(m.steps, m.value, label=par)
        axes[0, c].set_title(ds, fontsize=9)
        axes[1, c].set_xlabel("optimizer steps")
        axes[0, c].set_xlabel("epoch")
        for ax in axes[:, c]:
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test MSE (final depth)")
    axes[1, 0].set_ylabel("test MSE (final depth)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def figures_cmd(args):
    import matplotlib

    matplotlib.use("Agg")
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    grids, lw = load_grids(args.runs), read_runs(args.runs, "layerwise.csv")
    fig2(grids, out / "fig2_surfaces.png")
    for ds in dict.fromkeys(lw.dataset):
        fig3(grids, lw, ds, out / f"fig3_layerwise_{ds}.png")
    fig_history(read_runs(args.runs, "history.csv"), out / "fig_history_surfaces.png")
    print(f"figures -> {out}")


def add_commands(sub):
    for name, help, runs, func in [
            ("table1", "Table 1 (csv + md) from surface run folders", "run folders (each with layerwise.csv, summary.csv, run.json)", table1_cmd),
            ("ancre-table", "ANCRé topology table (csv + md) from topology run folders", "run folders of the ancre experiment (exp ancre_<variant>)", ancre_table_cmd)]:
        t = sub.add_parser(name, help=help)
        t.add_argument("--runs", nargs="+", required=True, help=runs)
        t.add_argument("--paper", required=True, help="CSV of published numbers (shared/reference/paper_results.csv)")
        t.add_argument("--out-csv", required=True)
        t.add_argument("--out-md", required=True)
        t.set_defaults(func=func)
    h = sub.add_parser("coeff-heatmap", help="Fig 6-style heatmap of learned shortcut coefficients (coeffs.csv)")
    h.add_argument("--runs", nargs="+", required=True, help="run folders (each with coeffs.csv) or coeffs.csv files")
    h.add_argument("--out", required=True, help="PNG to write")
    h.add_argument("--floor", type=float, default=-10.0, help="lowest log-ratio shown (absent shortcuts sit there)")
    h.set_defaults(func=heatmap_cmd)
    f = sub.add_parser("figures", help="Figures 2, 3, 8 and training curves from surface run folders")
    f.add_argument("--runs", nargs="+", required=True, help="run folders (each with grid.npz, layerwise.csv, history.csv)")
    f.add_argument("--outdir", required=True)
    f.set_defaults(func=figures_cmd)
