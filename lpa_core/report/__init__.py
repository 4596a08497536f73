"""The report package: run folders -> tables, figures, claims and one HTML report. Reads run folders only through
lpa_core.report.load (which checks each against its manifest); never loads a model.

    load     the one loader (verify_run on every folder; identity from run.json)
    tables   tidy frame, one aggregate, one spec per table (TABLES), markdown
    figures  figures per track, one colour per paradigm
    claims   the papers' claims, each decided by code from the tables
    html     the self-contained HTML report
    fair     issue #12: protocols, bootstrap verdicts, time to target, claims map, protocol search
"""
from pathlib import Path

from lpa_core.report.tables import ordering_markdown  # noqa: F401  (issue #13's test reads it from here)


def add_commands(sub):
    t = sub.add_parser("table", help="one table (csv + md) from run folders: " + ", ".join(_tables()))
    t.add_argument("name", choices=_tables())
    t.add_argument("--runs", nargs="+", required=True, help="run folders (or folders above them)")
    t.add_argument("--paper", required=True, help="the published values (config/paper_results.csv)")
    t.add_argument("--arch-map", nargs="*", default=[], help="RUN=PAPER: the paper's model a run's arch stands in for")
    t.add_argument("--out-csv", required=True)
    t.add_argument("--out-md")
    t.set_defaults(func=table_cmd)
    f = sub.add_parser("figures", help="the figures of one track (surfaces, vision, lm) from its run folders")
    f.add_argument("track", choices=["surfaces", "vision", "lm"])
    f.add_argument("--runs", nargs="+", required=True, help="run folders (or folders above them)")
    f.add_argument("--lr-runs", nargs="*", default=[], help="vision: run folders of the learning-rate sweep (Fig 10)")
    f.add_argument("--outdir", required=True)
    f.set_defaults(func=figures_cmd)
    h = sub.add_parser("coeff-heatmap", help="ANCRé Fig 6: learned shortcut coefficients (the runs' coeffs.csv)")
    h.add_argument("--runs", nargs="+", required=True, help="run folders, each with coeffs.csv")
    h.add_argument("--out", required=True, help="PNG to write")
    h.add_argument("--floor", type=float, default=-10.0, help="lowest log-ratio shown (absent shortcuts sit there)")
    h.set_defaults(func=lambda a: heatmap(a.runs, a.out, a.floor))
    s = sub.add_parser("samples", help="the language-model runs' samples.txt, one after the other (table5_samples.txt)")
    s.add_argument("--runs", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=samples_cmd)
    from lpa_core.report import fair, html

    html.add_command(sub)
    fair.add_command(sub)


def _tables():
    from lpa_core.report.tables import TABLES

    return list(TABLES)


def arch_map(pairs):
    """['resnet10_w16=resnet18', ...] -> {run arch: paper arch}."""
    out = {}
    for p in pairs or []:
        run, sep, paper = p.partition("=")
        if not sep or not run or not paper:
            raise ValueError(f"arch-map: expected RUN=PAPER, got '{p}'")
        out[run] = paper
    return out


def table_cmd(args):
    from lpa_core.report.load import load
    from lpa_core.report.tables import TABLES, write

    runs = load(args.runs)
    tab, md = TABLES[args.name](runs, args.paper, arch_map(args.arch_map))
    write(tab, md, args.out_csv, args.out_md)
    print(md)


def figures_cmd(args):
    from lpa_core.report import figures
    from lpa_core.report.load import load

    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"lr_runs": load(args.lr_runs)} if args.track == "vision" else {}
    figures.TRACKS[args.track](load(args.runs), out, **extra)
    print(f"{args.track} figures -> {out}")


def heatmap(runs, out, floor=-10.0):
    from lpa_core.report import figures
    from lpa_core.report.load import load

    figures.heatmap(load(runs), out, floor)


def samples_cmd(args):
    from lpa_core import io
    from lpa_core.report.load import load

    text = "\n\n".join(f"# ===== {r.dir}\n" + (r.dir / "samples.txt").read_text() for r in load(args.runs))
    io._atomic(args.out, lambda tmp: Path(tmp).write_text(text))
