"""Regenerating tables, figures and the report from cached runs, without training (README: "Regenerate from cache").

A fresh `git clone` that carries results/runs/ (committed, as the repository does) rebuilds results/tables,
figures/ and results/report.html with the documented command, `snakemake --profile profiles/regenerate`, and
schedules no training job: its `rerun-triggers: mtime` keeps a changed config or rule from re-running a job whose
outputs exist (Snakemake's default would re-train on a params change), and its `forcerun` rebuilds the aggregation
rules even where their outputs look up to date.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_workflow import ROOT, tiny  # noqa: E402

# The documented command (README, profiles/regenerate/config.yaml), on 2 cores.
REGENERATE = ["--profile", "profiles/regenerate", "--cores", "2"]
PROFILE = yaml.safe_load((ROOT / "profiles/regenerate/config.yaml").read_text())
PROJECT = ["Snakefile", "workflow", "config", "profiles", "lpa_core", "environment.yml", "pyproject.toml", ".gitignore"]


def small(cfg):
    """The tiny edit of tests/test_workflow.py, cut to one surface and one seed: two Table 1 jobs, one ANCRé
    topology job at the same tiny budget, one ANCRé case-study seed."""
    tiny(cfg)
    cfg["table1"].update(datasets=["saddle"], paradigms=["simultaneous", "lpa"])
    quick = cfg["scales"]["quick"]
    quick["table1"]["seeds"] = [0]
    if "ancre" in cfg:
        cfg["ancre"].update(datasets=["saddle"], runs={"simultaneous": ["ancre"]})
        quick["ancre"] = {**quick["ancre"], "seeds": [0], "train": dict(quick["table1"]["train"])}
    if "ancre_case" in cfg:
        quick.setdefault("ancre_case", {})["seeds"] = [0]


def run(cmd, cwd, **kw):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def snakemake(wd, *args):
    """snakemake in wd; its jobs run this interpreter on wd's own lpa_core (a clone uses its own code)."""
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PYTHONPATH": str(wd), "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    return run([os.path.join(bindir, "snakemake"), *args, "--config", "scale=quick"], wd, env=env)


def scheduled(dry_run_stdout):
    """{rule: job count} from a dry run's job stats table."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", dry_run_stdout, re.M) if m[1] != "total"}


def git(wd, *args):
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", *args], wd)


@pytest.mark.slow
def test_regenerate_from_cached_runs_trains_nothing(tmp_path):
    # a repository whose history carries cached runs, tables and figures of a tiny quick-scale reproduction
    src = tmp_path / "src"
    src.mkdir()
    for name in PROJECT:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(
            ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if (ROOT / name).is_dir() else {}))
    cfg = yaml.safe_load((src / "config/config.yaml").read_text())
    small(cfg)
    (src / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(src, "--cores", "2")
    runs = sorted(p for p in (src / "results/runs").rglob("*") if p.is_file() and not p.name.startswith("."))  # .fresh: not committed
    assert runs and any(p.name == "grid.npz" for p in runs)
    git(src, "init", "-q")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "cached runs")

    # Snakemake's default triggers would re-train here: a changed training key is a params change
    changed = yaml.safe_load((src / "config/config.yaml").read_text())
    changed["table1"]["train"]["lr"] = 0.02
    (src / "config/config.yaml").write_text(yaml.safe_dump(changed))
    assert "train_surfaces" in scheduled(snakemake(src, "-n").stdout)
    assert "train_surfaces" not in scheduled(snakemake(src, "-n", *REGENERATE).stdout)

    # a fresh clone: no .snakemake metadata, every file's mtime the checkout's
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(src), str(clone)], tmp_path)
    report = clone / "results/report_quick.html"  # not committed (.gitignore: several MB, rebuilt from the rest)
    outputs = [*sorted((clone / "results/tables/quick").glob("table1.*")),
               *sorted((clone / "results/tables/quick").glob("ancre.*")), *sorted((clone / "figures/quick").glob("fig*.png")),
               *sorted((clone / "figures/quick").glob("ancre_fig6*.png"))]  # what table, figures, ancre_heatmap, report write
    cached = sorted(p for p in (clone / "results/runs").rglob("*") if p.is_file() and not p.name.startswith("."))
    assert [p.relative_to(clone) for p in cached] == [p.relative_to(src) for p in runs]
    assert all(p.is_file() for p in outputs), [str(p) for p in outputs if not p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in [*outputs, *cached]}

    jobs = scheduled(snakemake(clone, "-n", *REGENERATE).stdout)
    assert not any(j.startswith(("train", "fetch")) for j in jobs), jobs
    assert PROFILE["rerun-triggers"] == "mtime" and {"table", "figures", "ancre_heatmap", "report"} <= set(jobs), jobs

    assert not report.exists()
    snakemake(clone, *REGENERATE)
    assert report.stat().st_size > 0
    for p in outputs:  # rebuilt
        assert p.stat().st_size > 0 and p.stat().st_mtime_ns > before[p], p
    for p in cached:  # untouched: nothing trained
        assert p.stat().st_mtime_ns == before[p], p
    page = report.read_text()
    assert "Table 1" in page and "data:image/png;base64," in page
    assert not (clone / "checkpoints").exists()  # no training job ever started


def test_paper_scale_regeneration_schedules_no_training():
    """This repository at scale paper: the cached tracks (Table 1, ANCRé) are rebuilt, the tracks with no cached
    runs (vision needs GPUs) are left out with a message instead of being trained."""
    r = snakemake_dry(ROOT, "--profile", "profiles/regenerate")
    jobs = scheduled(r.stdout)
    assert not any(j.startswith(("train", "fetch")) for j in jobs), jobs
    assert {"regenerate_stamp", "table", "figures", "ancre_heatmap", "report"} <= set(jobs), jobs
    assert "table1.md" in r.stdout and "ancre.md" in r.stdout and "table2.md" not in r.stdout
    missing = [d for d in (ROOT / "results/runs/paper").glob("table2/*/*/*/seed*") if not (d / "run.json").exists()]
    if not (ROOT / "results/runs/paper/table2").exists() or missing:
        assert "cached_only: vision:" in r.stderr and "left out: the track" in r.stderr


def test_cpu_scale_runs_only_the_vision_track_from_its_cached_runs():
    """scale cpu (scales.cpu.tracks: [vision], its runs committed): regenerating rebuilds the vision tables and
    figures and trains nothing; no job of another track is asked for."""
    r = snakemake_dry(ROOT, "--profile", "profiles/regenerate", "--config", "scale=cpu")
    jobs = set(scheduled(r.stdout))
    assert not any(j.startswith(("train", "fetch")) for j in jobs), jobs
    assert {"table", "vision_figures", "report"} <= jobs, jobs
    assert all(f"cpu/{t}.md" in r.stdout for t in ("table2", "table3", "sec54", "inference", "fig6"))
    assert not jobs & {"figures", "ancre_heatmap", "ancre_case", "lm_samples", "lm_figures"}, jobs
    assert not any(f"cpu/{t}.md" in r.stdout for t in ("table1", "ancre", "table5")), r.stdout


def snakemake_dry(wd, *args):
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    return run([os.path.join(bindir, "snakemake"), "-n", "--cores", "1", *args], wd, env=env)
