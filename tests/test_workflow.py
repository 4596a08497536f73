"""The Snakemake workflow: schema validation, dry runs of both scales, and a tiny real run end to end."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def workdir(tmp_path, edit=None):
    """A copy of the workflow in tmp_path, its config edited by `edit(cfg)`."""
    for name in ("Snakefile", "workflow", "config", "profiles", "environment.yml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    cfg = yaml.safe_load((tmp_path / "config/config.yaml").read_text())
    if edit:
        edit(cfg)
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def snakemake(wd, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    exe = Path(sys.executable).with_name("snakemake")
    return subprocess.run([str(exe), *args], cwd=wd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("scale", ["paper", "quick"])
def test_dry_run_schedules_one_job_per_paradigm(tmp_path, scale):
    r = snakemake(workdir(tmp_path), "-n", "--config", f"scale={scale}")
    assert r.returncode == 0, r.stderr
    n_paradigms = len(yaml.safe_load((ROOT / "config/config.yaml").read_text())["table1"]["paradigms"])
    assert f"train_surfaces        {n_paradigms}" in r.stdout


@pytest.mark.parametrize("edit,key", [
    (lambda c: c["table1"]["train"].update(epochs=-1), "epochs"),
    (lambda c: c["table1"]["train"].update(bogus=1), "bogus"),
    (lambda c: c["table1"].update(paradigms=["lpa", "magic"]), "magic"),
])
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, edit, key):
    r = snakemake(workdir(tmp_path, edit), "-n")
    assert r.returncode != 0
    assert key in r.stderr + r.stdout
    assert not (tmp_path / "results").exists()


def test_unknown_scale_is_an_error(tmp_path):
    r = snakemake(workdir(tmp_path), "-n", "--config", "scale=huge")
    assert r.returncode != 0 and "scale: unknown 'huge'" in r.stderr + r.stdout


def tiny(cfg):
    cfg["table1"].update(datasets=["saddle", "high_freq"], paradigms=["simultaneous", "lpa", "adaptive_lpa"])
    cfg["scales"]["quick"]["table1"] = {"seeds": [0, 1], "train": {
        "epochs": 3, "n_train": 300, "n_test": 300, "batch_size": 50, "adaptive_warmup": 1, "eval_every": 1, "grid": 20}}
    cfg["ancre"].update(datasets=["saddle"], runs={"simultaneous": ["cascade", "ancre"]})
    cfg["scales"]["quick"]["ancre"] = {"seeds": [0], "train": dict(cfg["scales"]["quick"]["table1"]["train"])}
    cfg["scales"]["quick"]["ancre_case"] = {"seeds": [0]}


def test_tiny_real_run_end_to_end(tmp_path):
    wd = workdir(tmp_path, tiny)
    r = snakemake(wd, "--cores", "2", "--config", "scale=quick")
    assert r.returncode == 0, r.stderr[-3000:]
    table = pd.read_csv(wd / "results/tables/table1.csv")
    assert set(table.paradigm) == {"simultaneous", "lpa", "adaptive_lpa"}
    assert set(table.dataset) == {"saddle", "high_freq"} and set(table.metric) >= {"mse", "mae"}
    assert (table.n_seeds == 2).all() and table["mean"].notna().all()
    assert table.loc[table.paradigm == "lpa", "paper_value"].notna().all()  # the paper's value stands beside ours
    assert "±" in (wd / "results/tables/table1.md").read_text()
    for name in ("fig2_surfaces.png", "fig3_layerwise_saddle.png", "fig3_layerwise_high_freq.png"):
        assert (wd / "figures" / name).stat().st_size > 10_000
    ancre = pd.read_csv(wd / "results/tables/ancre.csv")
    assert set(ancre.topology) == {"cascade", "ancre"} and ancre["mean"].notna().all()
    assert (wd / "figures/ancre_fig6_coeffs.png").stat().st_size > 10_000
    assert "ANCR" in (wd / "results/report.html").read_text()
    again = snakemake(wd, "-n", "--config", "scale=quick")  # nothing left to do
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
