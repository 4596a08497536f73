"""Figures per track, from run folders read through the loader (never from a model).

    python -m lpa_core figures {surfaces,vision,lm} --runs DIR ... --outdir figures [--lr-runs DIR ...]
    python -m lpa_core coeff-heatmap --runs DIR ... --out figures/ancre_fig6_coeffs.png

One colour per paradigm (`color`) and one order (lpa_core.registry.PARADIGMS, a plugin's too) in every figure; legends sit outside
the axes; every image panel has a colour bar; every PNG is written atomically at DPI.
surfaces: fig2_surfaces (final-depth surface per paradigm beside the truth), fig3_layerwise_<surface> (LPA Fig 3/8:
the shared head after each block, and test MSE/MAE against depth), fig_history_surfaces (test MSE against epochs
and optimizer steps). vision: fig4_layerwise_<dataset>, fig5_tsne_<dataset>_<arch>, fig6_curves_<dataset>
(accuracy against epochs, steps, wall time), fig10_lr, fig_inference. lm: fig_lm_layerwise (LPA v2 Fig 7),
fig_lm_ancre_curves (ANCRé Fig 5). coeff-heatmap: ANCRé Fig 6, the learned shortcut weights.
"""
import math
from pathlib import Path

import numpy as np

from lpa_core import io
from lpa_core.registry import PARADIGMS
from lpa_core.report.load import read
from lpa_core.report.tables import HIGHER, inference, lm_frame, rank
from lpa_core.registry import label

DPI = 80
TOPOLOGY_STYLE = {"cascade": "-", "ancre_add": "--", "ancre": ":"}  # ancre_add: the authors' wiring


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def color(p):
    """The one colour map: a paradigm's colour in every figure, from its place in lpa_core.registry.PARADIGMS."""
    names = list(PARADIGMS)
    base = p.split("_k")[0].split("_lrx")[0]
    return f"C{names.index(base) % 10}" if base in names else "0.4"


def save(fig, path, legend_axes=None):
    """Atomic PNG; with legend_axes, one legend of their labelled lines to the right of the figure (off the curves)."""
    if legend_axes is not None:
        got = {}
        for ax in np.ravel(legend_axes):
            for h, lab in zip(*ax.get_legend_handles_labels()):
                got.setdefault(lab, h)
        fig.legend(got.values(), got.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    import io as bytes_io

    from PIL import Image

    buf = bytes_io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt().close(fig)
    img = Image.open(buf).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)  # a palette PNG: 3-4x smaller
    io._atomic(path, lambda tmp: img.save(tmp, format="png", optimize=True))


def plain_log(ax):
    """A log y axis labelled 1, 2, 5 x 10^k in plain numbers (perplexity, loss), not 2 x 10^0."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def int_ticks(*axes):
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# ----------------------------------------------------------------------------- surfaces
def load_grids(runs):
    """{paradigm: dict(pred [R, L, n, n], truth [R, n, n], datasets [R], status [R], axis [n])}, PARADIGMS order; a
    tabular run's grid holds no dataset (regression: pred_test, y_test [R, N, d_out] instead)."""
    out = {r.paradigm: dict(np.load(r.dir / "grid.npz")) for r in runs}
    return {p: out[p] for p in sorted(out, key=rank)}


def first_run(g, dataset):
    """Index of the first non-diverged run of `dataset` in a grid (else the first run)."""
    idx = np.flatnonzero(g["datasets"] == dataset)
    return ([i for i in idx if g["status"][i] == "ok"] or list(idx))[0]


def surface(ax, img, lim, title=None):
    im = ax.imshow(np.asarray(img, np.float32), interpolation="nearest", **lim)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return im


def fig2(grids, path):
    """Ground truth beside each paradigm's final-depth surface, one row per surface (first seed), colour bar per row."""
    pars = list(grids)
    g0 = grids[pars[0]]
    datasets = list(dict.fromkeys(g0["datasets"]))
    ext = [g0["axis"][0], g0["axis"][-1]] * 2
    fig, axes = plt().subplots(len(datasets), len(pars) + 1, figsize=(1.6 * (len(pars) + 1) + 0.6, 1.6 * len(datasets)),
                               squeeze=False)
    for r, ds in enumerate(datasets):
        truth = g0["truth"][first_run(g0, ds)]
        lim = dict(vmin=truth.min(), vmax=truth.max(), origin="lower", extent=ext, cmap="viridis")
        im = surface(axes[r, 0], truth, lim, "ground truth" if r == 0 else None)
        axes[r, 0].set_ylabel(ds, fontsize=8)
        for c, par in enumerate(pars, start=1):
            i = first_run(grids[par], ds)
            pred = grids[par]["pred"][i, -1].astype(np.float32)
            bad = " DIVERGED" if grids[par]["status"][i] != "ok" else ""
            surface(axes[r, c], pred, lim, (f"{par}\n" if r == 0 else "") + f"mse {np.mean((pred - truth) ** 2):.2g}{bad}")
        fig.colorbar(im, ax=axes[r, :].tolist(), fraction=0.02, pad=0.01)
    fig.suptitle("Final-depth surfaces (first seed); colour scale of the ground truth per row")
    save(fig, path)


def fig3(grids, lw, dataset, path):
    """Per-depth predicted surfaces for every paradigm (rows) and depth (columns), then per-depth MSE and MAE."""
    pars = list(grids)
    g0 = grids[pars[0]]
    L = g0["pred"].shape[1]
    truth = g0["truth"][first_run(g0, dataset)]
    lim = dict(vmin=truth.min(), vmax=truth.max(), origin="lower", extent=[g0["axis"][0], g0["axis"][-1]] * 2, cmap="viridis")
    fig = plt().figure(figsize=(1.1 * (L + 1) + 0.8, 1.05 * len(pars) + 2.6))
    gs = fig.add_gridspec(len(pars) + 1, L + 2, width_ratios=[1] * (L + 1) + [0.1], height_ratios=[1] * len(pars) + [2.4],
                          hspace=0.3, wspace=0.1)
    for r, par in enumerate(pars):
        i = first_run(grids[par], dataset)
        for d in range(L):
            ax = fig.add_subplot(gs[r, d])
            surface(ax, grids[par]["pred"][i, d], lim, f"depth {d + 1}" if r == 0 else None)
            if d == 0:
                ax.set_ylabel(par, fontsize=7, color=color(par))
    im = surface(fig.add_subplot(gs[0, L]), truth, lim, "truth")
    fig.colorbar(im, cax=fig.add_subplot(gs[:len(pars), L + 1]))
    bottom = gs[len(pars), :].subgridspec(1, 2, wspace=0.3)
    axes = [fig.add_subplot(bottom[0, 0]), fig.add_subplot(bottom[0, 1])]
    depth_curves(axes, lw, dataset, pars)
    fig.suptitle(f"{dataset}: the shared head read out after each block (first seed);\ncurves: mean over seeds, band min..max", y=0.99)
    save(fig, path, axes[:1])


def depth_curves(axes, lw, dataset, pars):
    """Test error at every depth (mean over seeds, band min..max), one panel per metric of the dataset's runs."""
    sub = lw[(lw.dataset == dataset) & (lw.status == "ok")]
    for ax, metric in zip(axes, dict.fromkeys(lw[lw.dataset == dataset].metric)):
        for par in pars:
            s = sub[(sub.paradigm == par) & (sub.metric == metric)].groupby("depth").value
            m = s.mean()
            ax.plot(m.index, m.values, marker="o", ms=3, color=color(par), label=par)
            ax.fill_between(m.index, s.min().values, s.max().values, color=color(par), alpha=0.12)
        ax.set(yscale="linear" if metric in HIGHER else "log", xlabel="depth (blocks used)",
               ylabel=f"test {metric.upper()}")
        int_ticks(ax)
        ax.grid(alpha=0.3)


def fig3_curves(lw, dataset, path, scatter=None):
    """fig3 of a dataset without a plane to draw (a tabular one): the per-depth test curves, and for regression
    (scatter: {paradigm: grid.npz}) the full-depth test predictions against the truth (first seed, first target)."""
    scatter = {p: g for p, g in (scatter or {}).items() if "pred_test" in g}
    fig, axes = plt().subplots(1, 3 if scatter else 2, figsize=(10.5 if scatter else 7, 2.8))
    depth_curves(axes, lw, dataset, sorted(set(lw[lw.dataset == dataset].paradigm), key=rank))
    for par, g in scatter.items():
        axes[2].scatter(g["y_test"][0, :, 0], g["pred_test"][0, :, 0], s=4, alpha=0.5, color=color(par), label=par)
    if scatter:
        lo, hi = axes[2].get_xlim()
        axes[2].plot([lo, hi], [lo, hi], color="0.5", lw=0.8)
        axes[2].set(xlabel="true (test split, first seed; standardised)", ylabel="predicted, full depth")
        axes[2].grid(alpha=0.3)
    fig.suptitle(f"{dataset}: the shared head read out after each block; mean over seeds, band min..max", fontsize=9)
    save(fig, path, axes[:1])


def fig_history(hist, path):
    """Final-depth test MSE against epochs (top) and optimizer steps (bottom), one column per surface."""
    from matplotlib.ticker import MaxNLocator

    hist = hist[hist.metric.isin(["test_mse", "test_ce"])]  # the training loss on the test split (tabular: ce)
    datasets = list(dict.fromkeys(hist.dataset))
    fig, axes = plt().subplots(2, len(datasets), figsize=(2.5 * len(datasets), 4.8), squeeze=False)
    for c, ds in enumerate(datasets):
        h = hist[hist.dataset == ds]
        for par in sorted(set(h.paradigm), key=rank):
            m = h[h.paradigm == par].groupby("epoch")[["value", "steps"]].mean()
            axes[0, c].plot(m.index, m.value, color=color(par), label=par)
            axes[1, c].plot(m.steps, m.value, color=color(par), label=par)
        axes[0, c].set_title(ds, fontsize=9)
        for ax, xl in zip(axes[:, c], ["epoch", "optimizer steps"]):
            ax.set_yscale("log")
            ax.set_xlabel(xl, fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("test MSE or CE (final depth)", fontsize=8)
    fig.tight_layout()
    save(fig, path, axes)


def surfaces(runs, out):
    """fig2 and a fig3 per surface from grid.npz; a dataset without a grid (tabular) gets its fig3 as curves only,
    named by lpa_core.registry.label (no path in a file name)."""
    lw = read(runs, "layerwise.csv")
    raw = load_grids(runs)
    grids = {p: g for p, g in raw.items() if len(g["datasets"])}  # a tabular run's grid holds no surface
    drawn = set(next(iter(grids.values()))["datasets"]) if grids else set()
    if grids:
        fig2(grids, out / "fig2_surfaces.png")
    else:  # the workflow asks for it: say why it is empty
        fig = plt().figure(figsize=(5, 1))
        fig.text(0.5, 0.5, "no 2-D surface among these datasets: their per-depth curves are in fig3_layerwise_*",
                 ha="center", va="center", fontsize=8)
        save(fig, out / "fig2_surfaces.png")
    for ds in dict.fromkeys(lw.dataset):
        path = out / f"fig3_layerwise_{label(ds)}.png"
        fig3(grids, lw, ds, path) if ds in drawn else fig3_curves(lw, ds, path, raw)
    fig_history(read(runs, "history.csv"), out / "fig_history_surfaces.png")


# ----------------------------------------------------------------------------- ANCRé Fig 6
def heatmap(runs, out_png, floor=-10.0):
    """ANCRé Fig 6 from the runs' coeffs.csv: one panel per (exp, arch, paradigm, topology, dataset), p averaged over
    the seeds that did not diverge, shown as log(p_ij / max_i p_ij) (|p| for unnormalised coefficients) with rows j,
    columns i and the upper triangle (i >= j) white; absent shortcuts (p = 0) grey; colour scale max(floor, min)..0."""
    df = read(runs, "coeffs.csv", variant=lambda r: r.topology)
    panels = []
    for key, g in df.groupby(["arch", "paradigm", "variant", "dataset"], sort=False):
        L = int(g.j.max())
        P = np.full((L, L), np.nan)
        for (j, i), v in g.groupby(["j", "i"]).p.mean().items():  # mean skips NaN (diverged runs)
            P[j - 1, i] = abs(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            M = np.log(P / np.nanmax(np.where(np.isnan(P), -np.inf, P), axis=1, keepdims=True))
        ok = g.groupby("seed").p.apply(lambda s: s.notna().all())
        panels.append((key, M, int(ok.sum()), len(ok)))
    finite = [M[np.isfinite(M)] for _, M, *_ in panels]
    vmin = max(floor, min(min((v.min() for v in finite if v.size), default=-1.0), -1e-3))
    n = len(panels)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt().subplots(rows, cols, figsize=(3.0 * cols, 2.8 * rows), squeeze=False)
    cmap = plt().get_cmap("viridis").with_extremes(bad="0.85")
    im = None
    for k, (ax, ((arch, par, topo, ds), M, n_ok, n_seeds)) in enumerate(zip(axes.flat, panels)):
        L = M.shape[0]
        im = ax.imshow(np.ma.masked_where(~np.isfinite(M), np.maximum(M, vmin)), cmap=cmap, vmin=vmin, vmax=0)
        ax.imshow(np.where(np.triu(np.ones((L, L), bool), k=1), 1.0, np.nan), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks(range(L), range(L), fontsize=7)
        ax.set_yticks(range(L), range(1, L + 1), fontsize=7)
        if k // cols == rows - 1 or k + cols >= n:
            ax.set_xlabel("i (from)")
        if k % cols == 0:
            ax.set_ylabel("j (into)")
        ax.set_title(f"{ds if arch == 'resmlp' else f'{arch}, {ds}'}\n{par}, {topo} ({n_ok}/{n_seeds} seeds)", fontsize=7)
        if n_ok == 0:
            ax.text(0.5, 0.5, "diverged", transform=ax.transAxes, ha="center", va="center")
    for ax in axes.flat[n:]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=min(0.8, 3 / rows), label=r"$\log(p_{ij} / \max_i p_{ij})$")
    save(fig, out_png)


# ----------------------------------------------------------------------------- vision
def fig4(lw, dataset, path):
    """Layer-wise test accuracy (top) and loss (bottom), one column per model; mean over seeds, error bars std."""
    sub = lw[(lw.dataset == dataset) & (lw.status == "ok")]
    archs = list(dict.fromkeys(sub.arch))
    fig, axes = plt().subplots(2, len(archs), figsize=(3.8 * len(archs), 5.6), squeeze=False)
    for c, arch in enumerate(archs):
        a = sub[sub.arch == arch]
        for r, metric in enumerate(["test_acc_pct", "test_loss"]):
            ax = axes[r, c]
            for par in sorted(set(a.paradigm), key=rank):
                s = a[(a.paradigm == par) & (a.metric == metric)].groupby("depth").value
                m, sd = s.mean(), s.std()
                ax.errorbar(m.index, m.values, yerr=sd.values if s.count().max() > 1 else None, marker="o", ms=3,
                            capsize=2, color=color(par), label=par)
            ax.set(xlabel="depth (blocks used)", ylabel="test accuracy (%)" if r == 0 else "test loss")
            int_ticks(ax)
            ax.grid(alpha=0.3)
        n = a.seed.nunique()
        axes[0, c].set_title(f"{arch} ({n} seed{'s' if n > 1 else ''})", fontsize=10)
    fig.suptitle(f"{dataset}: the shared head read out after each block (mean over seeds; bars: std)")
    fig.tight_layout()
    save(fig, path, axes)


def tsne(x, seed=0):
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return TSNE(2, perplexity=float(min(30, max(5, (len(x) - 1) // 4))), init="pca", random_state=seed,
                max_iter=500).fit_transform(x)


def pick_depths(L, k=8):
    """At most k depths, evenly spread, always the first and the last."""
    return list(range(1, L + 1)) if L <= k else sorted({int(round(1 + i * (L - 1) / (k - 1))) for i in range(k)})


def fig5(emb, dataset, arch, path):
    """t-SNE of the per-depth embeddings (first ok seed of each paradigm), rows paradigms, columns depths."""
    pars = [p for p in ("sequential", "simultaneous", "lpa") if p in emb] or list(emb)
    pars = sorted(pars, key=rank)
    depths = pick_depths(emb[pars[0]]["emb"].shape[0])
    fig, axes = plt().subplots(len(pars), len(depths), figsize=(1.6 * len(depths), 1.6 * len(pars) + 0.6), squeeze=False)
    for r, p in enumerate(pars):
        for c, d in enumerate(depths):
            y = tsne(emb[p]["emb"][d - 1])
            sc = axes[r, c].scatter(y[:, 0], y[:, 1], c=emb[p]["labels"], cmap="tab10", s=2, vmin=-0.5, vmax=9.5)
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(f"depth {d}", fontsize=9)
        axes[r, 0].set_ylabel(p, fontsize=9, color=color(p))
    fig.colorbar(sc, ax=axes, ticks=range(10), fraction=0.02, pad=0.01, label="class")
    fig.suptitle(f"{dataset}, {arch}: t-SNE of the embeddings after each block ({len(emb[pars[0]]['labels'])} fixed test "
                 "images, first seed)", fontsize=10)
    save(fig, path)


def fig6(hist, dataset, path):
    """Final-depth test accuracy against epochs, optimizer steps and training wall time; rows models (Fig 6/9)."""
    h = hist[(hist.dataset == dataset) & (hist.metric == "test_acc_pct")]
    archs = list(dict.fromkeys(h.arch))
    fig, axes = plt().subplots(len(archs), 3, figsize=(11, 3.0 * len(archs)), squeeze=False)
    for r, arch in enumerate(archs):
        a = h[h.arch == arch]
        pars = [p for p in ("simultaneous", "lpa", "adaptive_lpa") if p in set(a.paradigm)] or sorted(set(a.paradigm), key=rank)
        for par in pars:
            m = a[a.paradigm == par].groupby("epoch")[["value", "steps", "wall_s"]].mean()
            for c, x in enumerate([m.index, m.steps, m.wall_s]):
                axes[r, c].plot(x, m.value, marker="o", ms=3, color=color(par), label=par)
        for c, xl in enumerate(["epoch", "optimizer steps", "training wall time (s)"]):
            axes[r, c].set_xlabel(xl)
            axes[r, c].grid(alpha=0.3)
        axes[r, 0].set_ylabel(f"{arch}\ntest accuracy (%)")
        int_ticks(axes[r, 0])
    fig.suptitle(f"{dataset}: full-depth test accuracy during training (mean over seeds)")
    fig.tight_layout()
    save(fig, path, axes)


def fig10(runs, path):
    """LPA's test accuracy against epochs at several learning rates, one panel per (dataset, model)."""
    h = read(runs, "history.csv", run_lr=lambda r: float(r.cfg["lr"]))
    h = h[h.metric == "test_acc_pct"]
    groups = list(h.groupby(["dataset", "arch"], sort=False))
    fig, axes = plt().subplots(1, len(groups), figsize=(4.5 * len(groups), 3.4), squeeze=False)
    for ax, ((ds, arch), g) in zip(axes[0], groups):
        lrs = sorted(set(g.run_lr))
        for (par, v), s in g.groupby(["paradigm", "run_lr"]):
            m = s.groupby("epoch").value.mean()
            ax.plot(m.index, m.values, marker="o", ms=3, color=plt().get_cmap("viridis")(lrs.index(v) / max(1, len(lrs) - 1)),
                    label=f"{par}, lr {v:g}")
        ax.set(title=f"{ds}, {arch}", xlabel="epoch", ylabel="test accuracy (%)")
        int_ticks(ax)
        ax.grid(alpha=0.3)
    fig.suptitle("LPA under different learning rates (mean over seeds)")
    fig.tight_layout()
    save(fig, path, axes)


def fig_inference(runs, path):
    """Accuracy of the truncated model at each depth (top), its size and latency relative to the full model (bottom)."""
    tab, _ = inference(runs)
    pars = [c[len("test_acc_pct_"):] for c in tab.columns if c.startswith("test_acc_pct_")]
    groups = list(tab.groupby(["dataset", "arch"], sort=False))
    fig, axes = plt().subplots(2, len(groups), figsize=(3.6 * len(groups), 5.6), squeeze=False)
    for c, ((ds, arch), g) in enumerate(groups):
        for p in pars:
            axes[0, c].plot(g.depth, g[f"test_acc_pct_{p}"], marker="o", ms=3, color=color(p), label=p)
        axes[0, c].set(title=f"{ds}, {arch}", ylabel="test accuracy (%) at depth k")
        ax = axes[1, c]
        ax.plot(g.depth, g.params / g.params.max(), marker="o", color="k", label="parameters")
        ax.plot(g.depth, g.latency_ms / g.latency_ms.iloc[-1], marker="s", color="0.5", label="latency")
        ax.plot(g.depth, g.depth_frac, ls="--", color="0.7", label="k / L")
        ax.set(xlabel="depth k (blocks kept)", ylabel="fraction of the full model")
        for a in axes[:, c]:
            int_ticks(a)
            a.grid(alpha=0.3)
    fig.suptitle("Truncated models: accuracy (top) and size / latency relative to the full model (bottom)")
    fig.tight_layout()
    save(fig, path, axes)


def vision(runs, out, lr_runs=()):
    lw, hist = read(runs, "layerwise.csv"), read(runs, "history.csv")
    for ds in dict.fromkeys(lw.dataset):
        fig4(lw, ds, out / f"fig4_layerwise_{label(ds)}.png")  # imagefolder:PATH: its label
        fig6(hist, ds, out / f"fig6_curves_{label(ds)}.png")
    emb = {}
    for r in sorted(runs, key=lambda r: int(r.cfg["seeds"][0])):  # the first ok seed of each paradigm
        z = np.load(r.dir / "embeddings.npz")
        if str(z["status"]) == "ok":
            emb.setdefault((str(z["dataset"]), str(z["arch"])), {}).setdefault(str(z["paradigm"]), dict(z))
    for (ds, arch), e in emb.items():
        fig5(e, ds, arch, out / f"fig5_tsne_{label(ds)}_{arch}.png")
    if lr_runs:
        fig10(lr_runs, out / "fig10_lr.png")
    fig_inference(runs, out / "fig_inference.png")


# ----------------------------------------------------------------------------- language models
def lm(runs, out):
    lw = lm_frame(runs, "layerwise.csv")
    ppl = lw[(lw.metric == "val_ppl") & (lw.status == "ok")].groupby(["topology", "paradigm", "depth"]).value
    m, sd = ppl.mean(), ppl.std()
    tops = sorted(set(lw.topology), key=lambda t: (TOPOLOGY_STYLE.get(t) is None, t != "cascade", t))
    fig, axes = plt().subplots(1, len(tops), figsize=(4.2 * len(tops), 3.6), sharey=True, squeeze=False)
    for ax, t in zip(axes[0], tops):
        for p in sorted(set(lw[lw.topology == t].paradigm), key=rank):
            if (t, p) in m.index:
                ax.errorbar(m[t, p].index, m[t, p].values, yerr=sd[t, p].fillna(0).values, color=color(p), marker="o",
                            ms=3, capsize=2, label=p)
        ax.set(title=t, xlabel="depth (decoder layers)")
        plain_log(ax)
        int_ticks(ax)
    axes[0][0].set_ylabel("validation perplexity")
    fig.suptitle(f"Per-layer perplexity through the shared head ({lw.arch.iloc[0]}, {lw.dataset.iloc[0]}; LPA v2 Fig. 7)",
                 fontsize=10)
    fig.tight_layout()
    save(fig, out / "fig_lm_layerwise.png", axes)
    h = lm_frame(runs, "history.csv")
    h = h[h.metric == "val_ppl"]
    both = [p for p in sorted(set(h.paradigm), key=rank) if len(set(TOPOLOGY_STYLE) & set(h[h.paradigm == p].topology)) > 1]
    fig, ax = plt().subplots(figsize=(5.5, 3.6))
    for p in both or sorted(set(h.paradigm), key=rank):
        for t, ls in TOPOLOGY_STYLE.items():
            s = h[(h.paradigm == p) & (h.topology == t)].groupby("steps").value.mean()
            if not s.empty:
                ax.plot(s.index, s.values, ls, color=color(p), marker="o", ms=3, label=f"{p}, {t}")
    ax.set(xlabel="optimizer steps", ylabel="validation perplexity (full depth)",
           title="Cascade (solid) vs ANCRé: authors' wiring (dashed), paper's (dotted); ANCRé Fig. 5")
    plain_log(ax)
    save(fig, out / "fig_lm_ancre_curves.png", [ax])


TRACKS = {"surfaces": surfaces, "vision": vision, "lm": lm}
