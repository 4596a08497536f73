"""The one loader: every table, figure and claim reads run folders only through `load` and `read`.

`load` checks each folder with lpa_core.runs.verify_run (run.json present, every file matching its manifest), so a
truncated, changed or missing file is never aggregated: the command stops with the RunError line naming the file and
the fix. Identity (track, scale, experiment) comes from run.json, never from a path.
"""
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lpa_core import ancre_results, runs as contract

LPA, ANCRE = "000_698f08884f537854.txt", "004_04e12b449531c5d6.txt"  # the seed papers (paper_results.csv `source`)


@dataclass
class Run:
    dir: Path
    info: dict  # the verified run.json

    cfg = property(lambda self: self.info["config"])
    scale = property(lambda self: self.info["scale"])
    exp = property(lambda self: self.info["experiment"])
    track = property(lambda self: self.info["track"])
    paradigm = property(lambda self: self.cfg["paradigm"])

    topology = property(lambda self: ancre_results.variant(self.cfg))  # the workflow's variant name (_add: authors' wiring)


def run_dirs(paths):
    """Run folders among `paths`: each a run folder, or a folder searched for run.json below it."""
    out = []
    for p in map(Path, paths):
        if (p / contract.RUN_JSON).is_file() or not p.is_dir():
            out.append(p)  # a folder without run.json is named by verify_run
        else:
            out += sorted(f.parent for f in p.rglob(contract.RUN_JSON))
    return list(dict.fromkeys(out))


def load(paths):
    """Verified runs of `paths` (see run_dirs); RunError (one line: the file and the fix) on the first damaged one.
    The runs of one experiment must come from one scale (mixing them would mix seeds and provenance)."""
    got = [Run(d, contract.verify_run(d)) for d in run_dirs(paths)]
    for exp in {r.exp for r in got}:
        scales = sorted({r.scale for r in got if r.exp == exp})
        if len(scales) > 1:
            raise ValueError(f"runs: experiment '{exp}' has runs of several scales ({', '.join(scales)}); pass the run "
                             "folders of one scale (results/runs/<scale>)")
    return got


def read(runs, name, **columns):
    """One frame of CSV `name` of every run (each checked by load), with `columns` added: {column: fn(run)}."""
    frames = []
    for r in runs:
        f = pd.read_csv(r.dir / name, keep_default_na=False, na_values=["nan", "NaN", ""])
        frames.append(f.assign(**{k: fn(r) for k, fn in columns.items()}))
    return pd.concat(frames, ignore_index=True)


def common(runs, key):
    """A config key's value over the runs: the value if they agree, else their distinct values joined by ' | '."""
    vals = list(dict.fromkeys(str(r.cfg.get(key)) for r in runs))
    return runs[0].cfg.get(key) if len(vals) == 1 else " | ".join(vals)


def stamp(runs):
    """'commit(s) ...; hardware ...; runs <first start> .. <last end>' of a set of runs."""
    i = [r.info for r in runs]
    return (f"commit(s) {', '.join(sorted({x['git_commit'] for x in i}))}; hardware "
            f"{'; '.join(sorted({x['hardware'] for x in i}))}; runs {min(x['start'] for x in i)} .. {max(x['end'] for x in i)}.")


def scale(runs):
    return ", ".join(sorted({r.scale for r in runs}))


def paper(paper_csv, source=None, table=None):
    """The published values (config/paper_results.csv, their one home), as strings, of one paper's table."""
    p = pd.read_csv(paper_csv, dtype=str, keep_default_na=False)
    return p[((p.source == source) if source else True) & ((p.table == table) if table else True)]
