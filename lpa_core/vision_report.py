"""Tables and figures of the vision track (LPA paper Sec 5.2-5.4, appendix H), from the run folders' CSV/npz only
(never from a model). One run folder = one (dataset, arch, paradigm, seed) job of `python -m lpa_core train`.

    python -m lpa_core vision-table --table {table2,table3,sec54,table4} --runs DIR ... --paper P --scale S \\
        [--arch-map RUN=PAPER ...] --out-csv T.csv --out-md T.md
    python -m lpa_core vision-inference --runs DIR ... --paper P --out-csv --out-md --out-fig
    python -m lpa_core vision-figures --runs DIR ... [--lr-runs DIR ...] --paper P --outdir figures --out-csv fig6.csv
    python -m lpa_core fetch-data --datasets cifar10,fashion_mnist --data-dir data

Tables are tidy, as table1.csv: dataset, arch, paradigm, metric, mean, std, n_seeds, n_diverged, paper_value, and
paper_arch: the paper's model whose published value stands beside ours. At a reduced scale a small model stands
in for a paper model (--arch-map resnet10_w16=resnet18): its row carries the paper's value of resnet18, for
orientation only; the .md header says so. A diverged run counts in n_diverged and is left out of the mean.

  table2  final-depth test accuracy (%) and loss, every (dataset, arch, paradigm)      (paper Table 2)
  table3  the same plus effective layers and model reduction (%) of Adaptive LPA     (paper Table 3)
  sec54   LPA over units of k blocks beside LPA and Simultaneous: accuracy, loss, optimizer steps, training
          wall time, time relative to Simultaneous                                      (paper Sec 5.4)
  table4  ImageNet test accuracy at every depth (columns 'imagenet1k, depth k')        (paper Table 4)
  inference.csv  per (dataset, arch, depth): parameters and measured latency of the model truncated to k
          blocks (median over the runs' inference.csv), their reduction against the full model, and the test
          accuracy at that depth per paradigm: Sec 5.4's "1/4 of the layers -> 4x smaller and faster"
  fig6.csv  the first epoch at which LPA / Adaptive LPA beat Simultaneous's final accuracy (paper Fig 6/9 text)
Figures: fig4_layerwise_<dataset> (accuracy and loss against depth, error bars = std over seeds), fig5_tsne_
<dataset>_<arch> (t-SNE of the per-depth embeddings of the fixed test images, first seed), fig6_curves_<dataset>
(test accuracy against epochs, optimizer steps and wall time), fig10_lr (LPA at several learning rates),
fig_inference (accuracy, size and latency against depth).
"""
import fcntl
from pathlib import Path

import numpy as np
import pandas as pd

from lpa_core import io
from lpa_core.report import read_runs, run_json

PAPER_SOURCE = "000_698f08884f537854.txt"
FAMILY = {"resnet": "ResNet: SGD Nesterov 0.9", "vit": "ViT: AdamW"}
TIDY_COLS = ["dataset", "arch", "paradigm", "metric", "mean", "std", "n_seeds", "n_diverged", "paper_value", "paper_arch"]
PARADIGM_ORDER = ["sequential", "simultaneous", "lpa", "adaptive_lpa", "lpa_grouped", "deep_supervision"]
CURVES = ["simultaneous", "lpa", "adaptive_lpa"]  # Fig 6/9
TSNE_PARADIGMS = ["sequential", "simultaneous", "lpa"]  # Fig 5
HIGHER = {"test_acc_pct"}
LOWER = {"test_loss"}


# ----------------------------------------------------------------------------- inputs
def arch_map(pairs):
    """['resnet10_w16=resnet18', ...] -> {run arch: paper arch}."""
    out = {}
    for p in pairs or []:
        run, sep, paper = p.partition("=")
        if not sep or not run or not paper:
            raise ValueError(f"arch-map: expected RUN=PAPER, got '{p}'")
        out[run] = paper
    return out


def run_info(dirs):
    """One row per run folder: dir, exp, dataset, arch, paradigm, seed, label (lpa_grouped_k<k>, or with
    _lr<lr> where the lr differs from the family's usual), lr, group_size, epochs, config."""
    rows = []
    for d in dirs:
        meta = run_json(d)
        c = meta["config"]
        rows.append(dict(dir=str(d), exp=c["exp"], dataset=c["datasets"][0], arch=c["arch"], paradigm=c["paradigm"],
                         seed=int(c["seeds"][0]), lr=float(c["lr"]), group_size=int(c["group_size"]),
                         epochs=int(c["epochs"]), config=c, meta=meta))
    return pd.DataFrame(rows)


def provenance_lines(info, scale, amap):
    """Markdown header lines: scale, seeds, per-family recipe, stand-ins, commits, hardware, dates."""
    seeds = sorted(set(info.seed))
    lines = [f"Scale `{scale}`; mean ± std over seeds {seeds} ({len(info)} runs). Made by `python -m lpa_core` from the "
             "run folders' CSVs."]
    recipes = []
    for fam in ("resnet", "vit"):
        sub = info[info.arch.str.startswith("resnet") == (fam == "resnet")]
        if sub.empty:
            continue
        c = sub.iloc[0].config
        recipes.append(f"{FAMILY[fam]} lr {c['lr']} (cosine, {c['warmup_epochs']} warm-up, to {c['final_lr_frac']}x), "
                       f"wd {c['weight_decay']}, batch {c['batch_size']}, {c['epochs']} epochs"
                       + (f", {c['train_subset']} train images" if c.get("train_subset") else "")
                       + (f", {c['test_subset']} test images" if c.get("test_subset") else ""))
    if recipes:
        lines.append("Recipes: " + "; ".join(recipes) + ".")
    used = sorted({a for a in info.arch if a in amap})
    if used:
        lines.append("**Stand-ins**: " + ", ".join(f"`{a}` for the paper's `{amap[a]}`" for a in used)
                     + ". In parentheses the paper's value for the model stood in for: for orientation, not a like-for-like "
                       "comparison (smaller model, fewer epochs and images).")
    metas = list(info.meta)
    lines.append(f"Commit(s) {', '.join(sorted({m['git_commit'] for m in metas}))}; hardware "
                 f"{'; '.join(sorted({m['hardware'] for m in metas}))}; runs {min(m['start'] for m in metas)} .. "
                 f"{max(m['end'] for m in metas)}.")
    return lines


def paper_rows(paper_csv, table):
    p = pd.read_csv(paper_csv, dtype=str, keep_default_na=False)
    return p[(p.source == PAPER_SOURCE) & (p.table == table)]


def aggregate(obs, keys):
    """obs: keys + value, ok -> tidy mean/std/n_seeds/n_diverged per key."""
    g = obs.groupby(keys, sort=False)
    tab = g.apply(lambda x: pd.Series({"mean": x.value[x.ok].mean(), "std": x.value[x.ok].std(),
                                       "n_seeds": int(x.ok.sum()), "n_diverged": int((~x.ok).sum())}),
                  include_groups=False).reset_index()
    return tab.astype({"n_seeds": int, "n_diverged": int})


def attach_paper(tab, paper, amap, dataset_of=lambda d: d, paradigm_of=lambda p: p):
    tab["paper_arch"] = tab.arch.map(lambda a: amap.get(a, a))
    look = {(r.dataset, r.arch, r.paradigm, r.metric): r.value for r in paper.itertuples()}
    tab["paper_value"] = [look.get((dataset_of(r.dataset), r.paper_arch, paradigm_of(r.paradigm), r.metric), "")
                          for r in tab.itertuples()]
    return tab


# ----------------------------------------------------------------------------- tables
def final_depth(lw):
    return lw[lw.depth == lw.groupby(["dataset", "arch", "paradigm", "seed"]).depth.transform("max")]


def label_runs(frame, info, grouped_k):
    """Replace paradigm lpa_grouped by lpa_grouped_k<k> where asked (sec54)."""
    if not grouped_k:
        return frame
    k = {(r.dataset, r.arch, r.seed, r.paradigm, r.exp): r.group_size for r in info.itertuples()}
    frame = frame.copy()
    grouped = frame.paradigm == "lpa_grouped"
    frame.loc[grouped, "paradigm"] = [f"lpa_grouped_k{k[(r.dataset, r.arch, r.seed, r.paradigm, r.exp)]}"
                                      for r in frame[grouped].itertuples()]
    return frame


def vision_table(kind, dirs, paper_csv, amap=None):
    """Tidy table `kind` (table2, table3, sec54, table4) from run folders; returns (table, info)."""
    amap = amap or {}
    info = run_info(dirs)
    lw = read_runs(dirs, "layerwise.csv")
    summ = read_runs(dirs, "summary.csv")
    lw = label_runs(lw, info, kind == "sec54")
    summ = label_runs(summ, info, kind == "sec54")
    keys = ["dataset", "arch", "paradigm", "metric"]
    lw["ok"] = lw.status == "ok"
    summ["ok"] = summ.status == "ok"
    if kind == "table4":
        obs = lw[lw.metric == "test_acc_pct"].copy()
        obs["dataset"] = [f"imagenet1k, depth {d}" for d in obs.depth]
        tab = aggregate(obs[keys + ["value", "ok"]], keys)
        look = {(f"imagenet1k, depth {r.depth}", r.arch, r.paradigm, r.metric): r.value
                for r in paper_rows(paper_csv, "table4").itertuples()}
        tab["paper_arch"] = tab.arch.map(lambda a: amap.get(a, a))
        tab["paper_value"] = [look.get((r.dataset, r.paper_arch, r.paradigm, r.metric), "") for r in tab.itertuples()]
        return tab[TIDY_COLS], info
    obs = final_depth(lw)[keys + ["value", "ok"]]
    if kind == "table3":
        eff = summ.assign(metric="effective_layers", value=summ.effective_depth.astype(float))
        red = summ.assign(metric="model_reduction_pct", value=summ.reduction_pct.astype(float))
        obs = pd.concat([obs, eff[keys + ["value", "ok"]], red[keys + ["value", "ok"]]], ignore_index=True)
    if kind == "sec54":
        steps = summ.assign(metric="steps", value=summ.steps.astype(float))
        wall = summ.assign(metric="train_wall_s", value=summ.wall_s.astype(float))
        sim = summ[summ.paradigm == "simultaneous"].groupby(["dataset", "arch"]).wall_s.mean()
        rel = summ.assign(metric="time_vs_simultaneous",
                          value=[w / sim.get((d, a), np.nan) for d, a, w in zip(summ.dataset, summ.arch, summ.wall_s)])
        obs = pd.concat([obs] + [f[keys + ["value", "ok"]] for f in (steps, wall, rel)], ignore_index=True)
    order = {p: i for i, p in enumerate(PARADIGM_ORDER)}
    obs = obs.assign(_o=obs.paradigm.map(lambda p: (order.get(p.split("_k")[0], 99), len(p), p)))
    obs = obs.sort_values("_o", kind="stable").drop(columns="_o")
    tab = aggregate(obs, keys)
    table = {"table2": "table2", "table3": "table3", "sec54": "sec5.4"}[kind]
    paradigm_of = (lambda p: p.replace("lpa_grouped_k", "lpa_group")) if kind == "sec54" else (lambda p: p)
    tab = attach_paper(tab, paper_rows(paper_csv, table), amap, paradigm_of=paradigm_of)
    metric_order = ["test_acc_pct", "test_loss", "effective_layers", "model_reduction_pct", "steps", "train_wall_s",
                    "time_vs_simultaneous"]
    tab["_m"] = tab.metric.map(metric_order.index)
    tab = tab.sort_values("_m", kind="stable").drop(columns="_m").reset_index(drop=True)
    return tab[TIDY_COLS], info


TITLES = {
    "table2": "Table 2: test accuracy and loss at the final depth, every model x dataset x paradigm",
    "table3": "Table 3: Adaptive LPA (effective layers, model reduction) beside Simultaneous and LPA",
    "sec54": "Sec 5.4: LPA over units of k blocks (lpa_grouped_k<k>) beside LPA (k = 1) and Simultaneous",
    "table4": "Table 4: ImageNet-1k test accuracy at every depth",
}
METRIC_NAMES = {"test_acc_pct": "Test accuracy (%) ↑", "test_loss": "Test loss ↓", "effective_layers": "Effective layers",
                "model_reduction_pct": "Model reduction (%)", "steps": "Optimizer steps",
                "train_wall_s": "Training wall time (s)", "time_vs_simultaneous": "Training time / Simultaneous's"}


def cell(r, fmt):
    if r.n_seeds == 0:
        return "diverged"
    s = fmt.format(r["mean"]) + (" ± " + fmt.format(r["std"]) if r.n_seeds > 1 and not pd.isna(r["std"]) else "")
    return s + (f" ({r.n_diverged} diverged)" if r.n_diverged else "")


def markdown(kind, tab, info, scale, amap):
    lines = [f"# {TITLES[kind]}", ""] + [l + "\n" for l in provenance_lines(info, scale, amap)]
    lines.append("Cells: ours (the paper's value, blank where it has none). **Bold**: best mean in the column among the "
                 "paradigms of one model (accuracy: highest; loss: lowest).\n")
    for metric in dict.fromkeys(tab.metric):
        t = tab[tab.metric == metric]
        datasets = list(dict.fromkeys(t.dataset))
        fmt = "{:.2f}" if metric in ("test_acc_pct", "effective_layers", "model_reduction_pct", "time_vs_simultaneous", "train_wall_s") else \
            "{:.0f}" if metric == "steps" else "{:.4f}"
        lines += [f"## {METRIC_NAMES.get(metric, metric)}", "", "| model | paradigm | " + " | ".join(datasets) + " |",
                  "|---" * (len(datasets) + 2) + "|"]
        for arch, ga in t.groupby("arch", sort=False):
            ok = ga[ga.n_seeds > 0]
            best = (ok.groupby("dataset")["mean"].max() if metric in HIGHER else
                    ok.groupby("dataset")["mean"].min() if metric in LOWER else None)
            name = arch + (f" (for {amap[arch]})" if arch in amap else "")
            for par, g in ga.groupby("paradigm", sort=False):
                cells = []
                for d in datasets:
                    r = g[g.dataset == d]
                    if r.empty:
                        cells.append("")
                        continue
                    r = r.iloc[0]
                    c = cell(r, fmt)
                    if best is not None and r.n_seeds > 0 and r["mean"] == best.get(d):
                        c = f"**{c}**"
                    if r.paper_value:
                        c += f" ({r.paper_value})"
                    cells.append(c)
                lines.append(f"| {name} | {par} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_table(tab, md, out_csv, out_md):
    io.write_csv(out_csv, list(tab.columns), tab.itertuples(index=False))
    io._atomic(out_md, lambda tmp: Path(tmp).write_text(md + "\n"))


def vision_table_cmd(args):
    amap = arch_map(args.arch_map)
    tab, info = vision_table(args.table, args.runs, args.paper, amap)
    md = markdown(args.table, tab, info, args.scale, amap)
    write_table(tab, md, args.out_csv, args.out_md)
    print(md)


# ----------------------------------------------------------------------------- inference (Sec 5.4)
def inference_table(dirs, amap=None):
    """Per (dataset, arch, depth): params, median latency over the runs, reductions vs the full model, and the
    mean test accuracy at that depth of every paradigm (columns test_acc_pct_<paradigm>)."""
    amap = amap or {}
    inf = read_runs(dirs, "inference.csv")
    lw = read_runs(dirs, "layerwise.csv")
    g = inf.groupby(["dataset", "arch", "depth"], sort=False).agg(
        params=("params", "first"), latency_ms=("latency_ms", "median"), batch=("batch", "first"),
        n_timings=("latency_ms", "size"), device=("device", "first")).reset_index()
    g["n_blocks"] = g.groupby(["dataset", "arch"]).depth.transform("max")
    full = g[g.depth == g.n_blocks].set_index(["dataset", "arch"])
    g["depth_frac"] = g.depth / g.n_blocks
    g["size_reduction_x"] = [full.at[(d, a), "params"] / p for d, a, p in zip(g.dataset, g.arch, g.params)]
    g["speedup_x"] = [full.at[(d, a), "latency_ms"] / t for d, a, t in zip(g.dataset, g.arch, g.latency_ms)]
    acc = lw[(lw.metric == "test_acc_pct") & (lw.status == "ok")].groupby(["dataset", "arch", "depth", "paradigm"]).value.mean()
    pars = [p for p in PARADIGM_ORDER if p in set(lw.paradigm)] + sorted(set(lw.paradigm) - set(PARADIGM_ORDER))
    for p in pars:
        g[f"test_acc_pct_{p}"] = [acc.get((d, a, k, p), np.nan) for d, a, k in zip(g.dataset, g.arch, g.depth)]
    g.insert(2, "paper_arch", g.arch.map(lambda a: amap.get(a, a)))
    cols = ["dataset", "arch", "paper_arch", "depth", "n_blocks", "depth_frac", "params", "size_reduction_x", "latency_ms",
            "speedup_x", "batch", "n_timings", "device"] + [f"test_acc_pct_{p}" for p in pars]
    return g[cols], pars


def quarter_depth(tab):
    """Per (dataset, arch): the row at a quarter of the blocks (rounded down, at least 1)."""
    rows = []
    for _, g in tab.groupby(["dataset", "arch"], sort=False):
        L = int(g.n_blocks.iloc[0])
        rows.append(g[g.depth == max(1, L // 4)].iloc[0])
    return pd.DataFrame(rows)


def inference_markdown(tab, pars, scale, amap):
    lines = ["# Sec 5.4: one training run, N models: size and inference time of the truncated model against depth", "",
             f"Scale `{scale}`. Parameters of the stem, the first k blocks and the shared head; latency: median over the "
             "runs' measurements (lpa_core.vision.depth_costs: one eval-mode forward of a batch, median of 5 after 2 "
             f"warm-up) on {'; '.join(sorted(set(tab.device)))}. Reductions against the full model. Accuracy: mean over "
             "seeds at that depth (the shared head read out after block k). The paper: \"a model compressed to "
             "one-fourth the size of the original 24-layer ViT can achieve a 4x reduction in both model size and "
             "inference time\".", ""]
    q = quarter_depth(tab)
    lines += ["## At a quarter of the blocks", "", "| dataset | model | depth | size reduction | speedup | "
              + " | ".join(f"acc {p}" for p in pars) + " |", "|---" * (5 + len(pars)) + "|"]
    for r in q.itertuples():
        name = r.arch + (f" (for {amap[r.arch]})" if r.arch in amap else "")
        accs = [f"{getattr(r, f'test_acc_pct_{p}'):.2f}" for p in pars]
        lines.append(f"| {r.dataset} | {name} | {r.depth} of {r.n_blocks} | {r.size_reduction_x:.2f}x | {r.speedup_x:.2f}x | "
                     + " | ".join(accs) + " |")
    lines += ["", "## Every depth", ""]
    for (ds, arch), g in tab.groupby(["dataset", "arch"], sort=False):
        lines += [f"### {ds}, {arch}", "", "| depth | params | size reduction | latency ms | speedup | "
                  + " | ".join(f"acc {p}" for p in pars) + " |", "|---" * (5 + len(pars)) + "|"]
        for r in g.itertuples():
            accs = [f"{getattr(r, f'test_acc_pct_{p}'):.2f}" for p in pars]
            lines.append(f"| {r.depth} | {r.params:,} | {r.size_reduction_x:.2f}x | {r.latency_ms:.2f} | {r.speedup_x:.2f}x | "
                         + " | ".join(accs) + " |")
        lines.append("")
    return "\n".join(lines)


def fig_inference(tab, pars, path):
    import matplotlib.pyplot as plt

    groups = list(tab.groupby(["dataset", "arch"], sort=False))
    fig, axes = plt.subplots(2, len(groups), figsize=(4 * len(groups), 6.4), squeeze=False)
    for c, ((ds, arch), g) in enumerate(groups):
        ax = axes[0, c]
        for p in pars:
            ax.plot(g.depth, g[f"test_acc_pct_{p}"], marker="o", ms=3, label=p)
        ax.set_title(f"{ds}, {arch}", fontsize=9)
        ax.set_ylabel("test accuracy (%) at depth k")
        ax.grid(alpha=0.3)
        ax = axes[1, c]
        ax.plot(g.depth, g.params / g.params.max(), marker="o", label="parameters")
        ax.plot(g.depth, g.latency_ms / g.latency_ms.iloc[-1], marker="s", label="latency")
        ax.plot(g.depth, g.depth_frac, ls="--", color="grey", label="k / L")
        ax.set_xlabel("depth k (blocks kept)")
        _int_ticks(ax, axes[0, c])
        ax.set_ylabel("fraction of the full model")
        ax.grid(alpha=0.3)
        if c == 0:
            axes[0, 0].legend(fontsize=7)
            ax.legend(fontsize=7)
    fig.suptitle("Truncated models: accuracy (top) and size / latency relative to the full model (bottom)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def inference_cmd(args):
    import matplotlib

    matplotlib.use("Agg")
    amap = arch_map(args.arch_map)
    tab, pars = inference_table(args.runs, amap)
    md = inference_markdown(tab, pars, args.scale, amap)
    write_table(tab, md, args.out_csv, args.out_md)
    Path(args.out_fig).parent.mkdir(parents=True, exist_ok=True)
    fig_inference(tab, pars, args.out_fig)
    print(md)


# ----------------------------------------------------------------------------- figures
def _int_ticks(*axes):
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _present(pars, wanted):
    got = [p for p in wanted if p in pars]
    return got or list(pars)


def fig4(lw, dataset, path):
    """Layer-wise test accuracy (top) and loss (bottom), one column per model; mean over seeds, error bars std."""
    import matplotlib.pyplot as plt

    sub = lw[(lw.dataset == dataset) & (lw.status == "ok")]
    archs = list(dict.fromkeys(sub.arch))
    fig, axes = plt.subplots(2, len(archs), figsize=(4.2 * len(archs), 6.4), squeeze=False)
    for c, arch in enumerate(archs):
        a = sub[sub.arch == arch]
        for r, metric in enumerate(["test_acc_pct", "test_loss"]):
            ax = axes[r, c]
            for par in [p for p in PARADIGM_ORDER if p in set(a.paradigm)]:
                s = a[(a.paradigm == par) & (a.metric == metric)].groupby("depth").value
                m, sd, n = s.mean(), s.std(), s.count()
                ax.errorbar(m.index, m.values, yerr=sd.values if n.max() > 1 else None, marker="o", ms=3, capsize=2,
                            label=par)
            ax.set_xlabel("depth (blocks used)")
            _int_ticks(ax)
            ax.set_ylabel("test accuracy (%)" if r == 0 else "test loss")
            ax.grid(alpha=0.3)
            if metric == "test_loss":
                ax.set_yscale("log")
        n_seeds = a.seed.nunique()
        axes[0, c].set_title(f"{arch} ({n_seeds} seed{'s' if n_seeds > 1 else ''})", fontsize=10)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{dataset}: the shared head read out after each block (mean over seeds; bars: std)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def tsne(x, seed=0):
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    perplexity = float(min(30, max(5, (len(x) - 1) // 4)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500).fit_transform(x)


def pick_depths(L, k=8):
    """At most k depths, evenly spread, always the first and the last."""
    if L <= k:
        return list(range(1, L + 1))
    return sorted({int(round(1 + i * (L - 1) / (k - 1))) for i in range(k)})


def fig5(emb_runs, dataset, arch, path):
    """t-SNE of the per-depth embeddings (first ok seed of each paradigm), rows paradigms, columns depths."""
    import matplotlib.pyplot as plt

    runs = {p: z for p, z in emb_runs.items()}
    pars = _present(runs, TSNE_PARADIGMS)
    L = runs[pars[0]]["emb"].shape[0]
    depths = pick_depths(L)
    fig, axes = plt.subplots(len(pars), len(depths), figsize=(1.9 * len(depths), 1.9 * len(pars) + 0.6), squeeze=False)
    for r, p in enumerate(pars):
        z = runs[p]
        for c, d in enumerate(depths):
            ax = axes[r, c]
            y = tsne(z["emb"][d - 1])
            ax.scatter(y[:, 0], y[:, 1], c=z["labels"], cmap="tab10", s=3, vmin=0, vmax=9)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"depth {d}", fontsize=9)
            if c == 0:
                ax.set_ylabel(p, fontsize=9)
    fig.suptitle(f"{dataset}, {arch}: t-SNE of the embeddings after each block ({len(runs[pars[0]]['labels'])} fixed test "
                 "images, colour = class, first seed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def fig6(hist, dataset, path):
    """Final-depth test accuracy against epochs, optimizer steps and training wall time; rows models."""
    import matplotlib.pyplot as plt

    h = hist[(hist.dataset == dataset) & (hist.metric == "test_acc_pct")]
    archs = list(dict.fromkeys(h.arch))
    fig, axes = plt.subplots(len(archs), 3, figsize=(12, 3.2 * len(archs)), squeeze=False)
    for r, arch in enumerate(archs):
        a = h[h.arch == arch]
        for par in _present(list(dict.fromkeys(a.paradigm)), CURVES):
            m = a[a.paradigm == par].groupby("epoch")[["value", "steps", "wall_s"]].mean()
            for c, x in enumerate([m.index, m.steps, m.wall_s]):
                axes[r, c].plot(x, m.value, marker="o", ms=3, label=par)
        for c, xl in enumerate(["epoch", "optimizer steps", "training wall time (s)"]):
            axes[r, c].set_xlabel(xl)
            axes[r, c].grid(alpha=0.3)
        axes[r, 0].set_ylabel(f"{arch}\ntest accuracy (%)")
        _int_ticks(axes[r, 0])
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{dataset}: full-depth test accuracy during training (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def fig10(hist, info, path):
    """LPA's test accuracy against epochs at several learning rates, one panel per (dataset, model)."""
    import matplotlib.pyplot as plt

    lr = {(r.dataset, r.arch, r.paradigm, r.seed, r.exp): r.lr for r in info.itertuples()}
    h = hist[hist.metric == "test_acc_pct"].copy()
    h["run_lr"] = [lr[(r.dataset, r.arch, r.paradigm, r.seed, r.exp)] for r in h.itertuples()]
    groups = list(h.groupby(["dataset", "arch"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.8), squeeze=False)
    for c, ((ds, arch), g) in enumerate(groups):
        for (par, v), s in g.groupby(["paradigm", "run_lr"]):
            m = s.groupby("epoch").value.mean()
            axes[0, c].plot(m.index, m.values, marker="o", ms=3, label=f"{par}, lr {v:g}")
        axes[0, c].set_title(f"{ds}, {arch}", fontsize=10)
        axes[0, c].set_xlabel("epoch")
        _int_ticks(axes[0, c])
        axes[0, c].set_ylabel("test accuracy (%)")
        axes[0, c].grid(alpha=0.3)
        axes[0, c].legend(fontsize=8)
    fig.suptitle("LPA under different learning rates (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def beat_table(hist, paper_csv, amap):
    """Tidy: per (dataset, arch) and LPA / Adaptive LPA, the first epoch whose mean test accuracy exceeds
    Simultaneous's final mean accuracy (NaN: never within the budget), and the accuracy then."""
    h = hist[hist.metric == "test_acc_pct"]
    m = h.groupby(["dataset", "arch", "paradigm", "epoch"]).value.agg(["mean", "std", "count"]).reset_index()
    rows = []
    for (ds, arch), g in m.groupby(["dataset", "arch"], sort=False):
        sim = g[g.paradigm == "simultaneous"].sort_values("epoch")
        if sim.empty:
            continue
        target = sim["mean"].iloc[-1]
        for par in ("lpa", "adaptive_lpa"):
            p = g[g.paradigm == par].sort_values("epoch")
            if p.empty:
                continue
            hit = p[p["mean"] > target]
            n = int(p["count"].iloc[-1])
            e, acc, sd = (hit.epoch.iloc[0], hit["mean"].iloc[0], hit["std"].iloc[0]) if len(hit) else (np.nan, np.nan, np.nan)
            rows += [dict(dataset=ds, arch=arch, paradigm=par, metric="epoch_to_beat_sim", mean=float(e), std=np.nan,
                          n_seeds=n, n_diverged=0),
                     dict(dataset=ds, arch=arch, paradigm=par, metric="test_acc_pct_at_that_epoch", mean=float(acc),
                          std=sd, n_seeds=n, n_diverged=0),
                     dict(dataset=ds, arch=arch, paradigm=par, metric="sim_final_test_acc_pct", mean=float(target),
                          std=np.nan, n_seeds=n, n_diverged=0),
                     dict(dataset=ds, arch=arch, paradigm=par, metric="epochs_run", mean=float(p.epoch.max()),
                          std=np.nan, n_seeds=n, n_diverged=0)]
    tab = pd.DataFrame(rows, columns=TIDY_COLS[:-2])
    return attach_paper(tab, paper_rows(paper_csv, "fig6"), amap)[TIDY_COLS]


def load_embeddings(dirs):
    """{(dataset, arch): {paradigm: npz dict}} of the first ok seed per paradigm (table2 runs only)."""
    out = {}
    for d in dirs:
        p = Path(d) / "embeddings.npz"
        if not p.is_file():
            continue
        z = np.load(p)
        if str(z["status"]) != "ok":
            continue
        key, par, seed = (str(z["dataset"]), str(z["arch"])), str(z["paradigm"]), int(z["seed"])
        slot = out.setdefault(key, {})
        if par not in slot or seed < slot[par]["seed"]:
            slot[par] = {k: z[k] for k in z.files}
    return out


def figures_cmd(args):
    import matplotlib

    matplotlib.use("Agg")
    amap = arch_map(args.arch_map)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    info = run_info(args.runs)
    main = info[info.exp == "table2"] if (info.exp == "table2").any() else info
    dirs = list(main.dir)
    lw, hist = read_runs(dirs, "layerwise.csv"), read_runs(dirs, "history.csv")
    for ds in dict.fromkeys(lw.dataset):
        fig4(lw, ds, out / f"fig4_layerwise_{ds}.png")
        fig6(hist, ds, out / f"fig6_curves_{ds}.png")
    for (ds, arch), runs in load_embeddings(dirs).items():
        fig5(runs, ds, arch, out / f"fig5_tsne_{ds}_{arch}.png")
    if args.lr_runs:
        linfo = run_info(args.lr_runs)
        fig10(read_runs(args.lr_runs, "history.csv"), linfo, out / "fig10_lr.png")
    if args.out_csv:
        tab = beat_table(hist, args.paper, amap)
        io.write_csv(args.out_csv, list(tab.columns), tab.itertuples(index=False))
        print(tab.to_string())
    print(f"vision figures -> {out}")


# ----------------------------------------------------------------------------- data
DATA_FILES = {
    "fashion_mnist": [f"FashionMNIST/raw/{n}" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")],
    "cifar10": [f"cifar-10-batches-py/{n}" for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/test"],
}


def fetch(dataset, data_dir, imagenet_dir=""):
    """Make `dataset` readable from data_dir (download / unpack) under an exclusive lock on data_dir/.fetch.lock,
    so parallel jobs never write one folder at once; a no-op when its files are there."""
    if dataset == "imagenet":
        for part in ("train", "val"):
            if not (Path(imagenet_dir) / part).is_dir():
                raise FileNotFoundError(f"imagenet_dir: no {Path(imagenet_dir) / part}/ (an ImageFolder: one folder per class)")
        return "present"
    if dataset not in DATA_FILES:
        raise ValueError(f"datasets: unknown '{dataset}' (valid: {', '.join([*DATA_FILES, 'imagenet'])})")
    there = lambda: all((Path(data_dir) / f).is_file() for f in DATA_FILES[dataset])
    if there():
        return "present"
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(data_dir) / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (also if this process dies)
        if there():  # another job fetched it while this one waited
            return "present"
        from lpa_core import images

        if dataset == "fashion_mnist":
            images.load_fashion_mnist(data_dir)
        else:
            images.load_cifar(dataset, data_dir)
    return "fetched"


def fetch_cmd(args):
    for ds in args.datasets.split(","):
        print(f"{ds}: {fetch(ds, args.data_dir, args.imagenet_dir)} in {args.data_dir}")


def add_commands(sub):
    common = dict(paper=dict(required=True, help="CSV of published numbers (config/paper_results.csv)"),
                  scale=dict(default="?", help="scale name, for the header"),
                  arch_map=dict(nargs="*", default=[], help="RUN=PAPER: the paper model a run's arch stands in for"))

    def add(p, *names):
        for n in names:
            p.add_argument("--" + n.replace("_", "-"), dest=n, **common[n])

    t = sub.add_parser("vision-table", help="Table 2/3/4 or Sec 5.4 (csv + md) from vision run folders")
    t.add_argument("--table", required=True, choices=["table2", "table3", "sec54", "table4"])
    t.add_argument("--runs", nargs="+", required=True, help="run folders (layerwise.csv, summary.csv, run.json)")
    add(t, "paper", "scale", "arch_map")
    t.add_argument("--out-csv", required=True)
    t.add_argument("--out-md", required=True)
    t.set_defaults(func=vision_table_cmd)
    i = sub.add_parser("vision-inference", help="size and latency of the truncated models beside their accuracy")
    i.add_argument("--runs", nargs="+", required=True, help="run folders (inference.csv, layerwise.csv, run.json)")
    add(i, "paper", "scale", "arch_map")
    i.add_argument("--out-csv", required=True)
    i.add_argument("--out-md", required=True)
    i.add_argument("--out-fig", required=True)
    i.set_defaults(func=inference_cmd)
    f = sub.add_parser("vision-figures", help="Figures 4, 5, 6 (and 9), 10 and fig6.csv from vision run folders")
    f.add_argument("--runs", nargs="+", required=True, help="Table 2 run folders (layerwise, history, embeddings)")
    f.add_argument("--lr-runs", nargs="*", default=[], help="run folders of the learning-rate sweep (Fig 10)")
    add(f, "paper", "scale", "arch_map")
    f.add_argument("--outdir", required=True)
    f.add_argument("--out-csv", help="fig6.csv: epochs for LPA / Adaptive LPA to beat Simultaneous")
    f.set_defaults(func=figures_cmd)
    d = sub.add_parser("fetch-data", help="download / unpack image datasets into --data-dir (locked: one at a time)")
    d.add_argument("--datasets", required=True, help="comma-separated: fashion_mnist, cifar10, cifar100, imagenet")
    d.add_argument("--data-dir", default="data")
    d.add_argument("--imagenet-dir", default="")
    d.set_defaults(func=fetch_cmd)
