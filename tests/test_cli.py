"""`python -m lpa_core train`: bad input is one line on stderr naming the key; the output files and their columns;
a diverging job still exits 0; checkpoints never land in the results folder."""
import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lpa_core.cli import main
from lpa_core.config import TrainConfig
from lpa_core.data import SURFACES
from lpa_core.paradigms import PARADIGMS

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["exp", "dataset", "arch", "paradigm", "seed"]
TINY = ["--n_train", "200", "--n_test", "200", "--batch_size", "50", "--depth", "3", "--width", "6", "--grid", "8",
        "--eval_every", "1", "--threads", "1"]
torch.set_num_threads(1)  # in-process jobs set it anyway; keep tiny ops single-threaded on a shared box


def cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lpa_core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


# --- 8. errors ------------------------------------------------------------------------------------------------------

def one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("args,key,valid", [
    (["--datasets", "saddle,nope"], "datasets", list(SURFACES)),
    (["--paradigm", "magic"], "paradigm", list(PARADIGMS)),
    (["--arch", "transformerXL"], "arch", ["resmlp"]),
    (["--activation", "swish"], "activation", ["relu", "tanh"]),
    (["--lpa_e2e", "never"], "lpa_e2e", ["epoch", "batch"]),
    (["--topology", "hourglass"], "topology", ["cascade", "ancre"]),
    (["--epochs", "-1"], "epochs", []),
    (["--epochs", "0"], "epochs", []),
    (["--epochs", "abc"], "epochs", []),
    (["--lr", "-0.1"], "lr", []),
    (["--lr", "0"], "lr", []),
    (["--lr", "nan"], "lr", []),
    (["--lr", "inf"], "lr", []),
    (["--tau", "nan"], "tau", []),
    (["--seeds", "0,1,0"], "seeds", []),
    (["--datasets", "saddle,saddle"], "datasets", []),
    (["--domain", "1,2,3"], "domain", []),
    (["--domain", "1,-1"], "domain", []),
    (["--domain", "a,b"], "domain", []),
    (["--epochs"], "epochs", []),
    (["--bogus", "1"], "bogus", ["--epochs", "--paradigm", "--datasets"]),
    (["--config", "missing.yaml"], "config", []),
    (["--paradigm", "adaptive_lpa", "--epochs", "5", "--adaptive_warmup", "5"], "adaptive_warmup", []),
])
def test_bad_input_is_one_line_naming_the_key(tmp_path, monkeypatch, capsys, args, key, valid):
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "--out", "out", *args])
    err = capsys.readouterr().err
    assert rc != 0
    line = one_line(err)
    assert line.startswith(f"error: {key}:"), line
    for v in valid:
        assert v in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "checkpoints").exists()  # failed before any work


@pytest.mark.parametrize("text,key", [("epochs: abc\n", "epochs"), ("epochs: 2.5\n", "epochs"),
                                      ("bogus: 1\n", "bogus"), ("datasets: saddle\n", "datasets"),
                                      ("- 1\n", "config"), ("a: [1\n", "config"), ("paradigm: magic\n", "paradigm")])
def test_bad_config_file_is_one_line_naming_the_key(tmp_path, monkeypatch, capsys, text, key):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(text)
    rc = main(["train", "--out", "out", "--config", "c.yaml"])
    assert rc != 0
    assert one_line(capsys.readouterr().err).startswith(f"error: {key}:")
    assert not (tmp_path / "out").exists()


def test_real_cli_error_exits_nonzero_with_one_line(tmp_path):
    r = cli("train", "--out", "out", "--paradigm", "magic", cwd=tmp_path)
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert "paradigm" in line and "magic" in line and all(p in line for p in PARADIGMS)


def test_help_lists_every_key(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for key in ("--out", "--config", "--ckpt-dir"):
        assert key in out
    for f in fields(TrainConfig):  # every config key, with its default
        default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        assert f"--{f.name} (default {default})" in out


# --- 6. output files ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """One real CLI job, run from `work/` with an absolute --out elsewhere and no --ckpt-dir."""
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "work").mkdir()
    out = tmp / "results" / "lpa"
    r = cli("train", "--out", str(out), "--paradigm", "lpa", "--datasets", "saddle,high_freq", "--seeds", "0,1",
            "--epochs", "2", "--exp", "schema", *TINY, "--ckpt_every_s", "0", cwd=tmp / "work")
    assert r.returncode == 0, r.stderr
    return tmp, out, r


def test_outputs_and_no_checkpoint_or_temp_file_in_out(job):
    tmp, out, r = job
    names = {p.name for p in out.iterdir()}
    assert {"grid.npz", "history.csv", "layerwise.csv", "run.json", "summary.csv"} <= names
    assert not [n for n in names if n.endswith(".pt") or n.startswith(".") or "tmp" in n], names
    assert "done: 4 ok, 0 diverged" in r.stderr


def test_default_checkpoint_goes_under_checkpoints_not_into_out(job):
    tmp, out, _ = job
    ck = tmp / "work" / "checkpoints" / out.relative_to(out.anchor) / "last.pt"
    assert ck.is_file()
    assert not list(out.rglob("*.pt"))
    assert torch.load(ck, weights_only=True)["epoch"] == 2


def test_layerwise_csv(job):
    lw = pd.read_csv(job[1] / "layerwise.csv")
    assert list(lw.columns) == KEYS + ["depth", "metric", "value", "status"]
    assert len(lw) == 4 * 3 * 2  # runs x depths x metrics
    assert set(lw.exp) == {"schema"} and set(lw.arch) == {"resmlp"} and set(lw.paradigm) == {"lpa"}
    assert set(zip(lw.dataset, lw.seed)) == {("saddle", 0), ("saddle", 1), ("high_freq", 0), ("high_freq", 1)}
    assert sorted(set(lw.depth)) == [1, 2, 3] and set(lw.metric) == {"mse", "mae"}
    assert (lw.status == "ok").all() and np.isfinite(lw.value).all() and (lw.value > 0).all()
    assert not lw.duplicated(KEYS + ["depth", "metric"]).any()


def test_history_csv(job):
    h = pd.read_csv(job[1] / "history.csv")
    assert list(h.columns) == KEYS + ["epoch", "steps", "samples", "flops", "wall_s", "lr", "metric", "value"]
    assert len(h) == 4 * 2 * 5  # runs x evaluated epochs x metrics
    assert set(h.metric) == {"train_mse", "test_mse", "test_mae", "val_mse", "val_mae"} and sorted(set(h.epoch)) == [1, 2]
    per_epoch = h.groupby("epoch").flops.agg(["min", "max"])
    assert (per_epoch["min"] == per_epoch["max"]).all() and per_epoch["min"][2] == 2 * per_epoch["min"][1] > 0
    assert (h.steps == h.epoch * 4 * (3 + 1)).all()  # LPA: L+1 steps per batch, 4 batches
    assert (h.samples == h.steps * 50).all() and (h.wall_s >= 0).all()
    assert np.allclose(h.lr[h.epoch == 1], 1e-2) and np.allclose(h.lr[h.epoch == 2], 5e-3)


def test_summary_csv(job):
    s = pd.read_csv(job[1] / "summary.csv")
    assert list(s.columns) == KEYS + ["status", "diverged_epoch", "steps", "samples", "flops", "wall_s", "n_blocks",
                                      "effective_depth", "reduction_pct", "params_per_run", "base_lr"]
    assert len(s) == 4 and (s.status == "ok").all() and s.diverged_epoch.isna().all()
    assert (s.steps == 2 * 4 * 4).all() and (s.samples == s.steps * 50).all()
    assert (s.n_blocks == 3).all() and (s.effective_depth == 3).all() and (s.reduction_pct == 0).all()
    assert (s.params_per_run == (2 * 6 + 6) + 3 * 2 * (6 * 6 + 6) + (6 + 1)).all()


def test_run_json(job):
    run = json.loads((job[1] / "run.json").read_text())
    for key in ("config", "command", "git_commit", "hardware", "versions", "start", "end", "runs"):
        assert key in run
    assert run["config"]["paradigm"] == "lpa" and run["config"]["epochs"] == 2 and run["config"]["seeds"] == [0, 1]
    assert {"python", "torch", "numpy"} <= set(run["versions"]) and run["versions"]["torch"] == torch.__version__
    assert run["git_commit"] and run["start"] <= run["end"]
    assert run["runs"] == [{"dataset": d, "seed": s, "status": "ok"} for d in ("saddle", "high_freq") for s in (0, 1)]


def test_grid_npz(job):
    g = np.load(job[1] / "grid.npz")
    assert g["pred"].shape == (2, 3, 8, 8) and g["pred"].dtype == np.float16  # grid_seeds 1: first seed per dataset
    assert g["truth"].shape == (2, 8, 8) and g["axis"].shape == (8,)
    assert list(g["datasets"]) == ["saddle", "high_freq"] and list(g["seeds"]) == [0, 0]
    assert list(g["status"]) == ["ok"] * 2


def test_coeffs_csv(job):
    c = pd.read_csv(job[1] / "coeffs.csv")
    assert list(c.columns) == KEYS + ["topology", "j", "i", "p"]
    assert len(c) == 4 * (1 + 2 + 3) and set(c.topology) == {"cascade"}  # runs x shortcuts i < j <= L
    assert (c.p == (c.i == c.j - 1).astype(float)).all()  # cascade: p_ij = [i = j-1]


# --- 7. divergence --------------------------------------------------------------------------------------------------

def test_diverging_job_completes_and_exits_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "--out", "out", "--paradigm", "lpa", "--datasets", "saddle,high_freq", "--epochs", "3",
               "--lr", "1e6", *TINY])
    assert rc == 0
    assert "0 ok, 2 diverged" in capsys.readouterr().err
    s = pd.read_csv(tmp_path / "out/summary.csv")
    assert (s.status == "diverged").all() and s.diverged_epoch.between(1, 3).all()
    lw = pd.read_csv(tmp_path / "out/layerwise.csv")
    assert (lw.status == "diverged").all() and lw.value.isna().all()
    run = json.loads((tmp_path / "out/run.json").read_text())
    assert [r["status"] for r in run["runs"]] == ["diverged"] * 2
    assert (tmp_path / "out/grid.npz").is_file() and (tmp_path / "out/history.csv").is_file()


# --- pre-flight, lock, checkpoints, run identity (issue 11) ---------------------------------------------------------

@pytest.mark.parametrize("flag,key", [("--out", "out"), ("--ckpt-dir", "ckpt_dir")])
def test_unwritable_folder_is_one_line_before_training(tmp_path, monkeypatch, capsys, flag, key):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    args = {"--out": "out", "--ckpt-dir": "ck"} | {flag: "afile/x"}
    rc = main(["train", *[v for kv in args.items() for v in kv], *TINY, "--epochs", "1"])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith(f"error: {key}: cannot write to 'afile/x'"), line
    assert not (tmp_path / "out").exists()  # nothing left behind


def tiny_job(tmp_path, *extra):
    return main(["train", "--out", str(tmp_path / "out"), "--ckpt-dir", str(tmp_path / "ck"), "--datasets", "saddle",
                 "--epochs", "2", "--ckpt_every_s", "0", *TINY, *extra])


@pytest.mark.parametrize("bad", ["garbage", "truncated", "partial"])
def test_damaged_checkpoint_is_moved_aside_and_the_run_resumes(tmp_path, capsys, bad):
    assert tiny_job(tmp_path) == 0
    want = (tmp_path / "out/layerwise.csv").read_bytes()
    last = tmp_path / "ck/last.pt"
    assert (tmp_path / "ck/prev.pt").is_file()
    if bad == "garbage":
        last.write_bytes(os.urandom(100))
    elif bad == "truncated":
        last.write_bytes(last.read_bytes()[:500])
    else:
        torch.save({"epoch": 1}, last)
    capsys.readouterr()
    assert tiny_job(tmp_path) == 0
    err = capsys.readouterr().err
    assert f"checkpoint {last}: unreadable or partial" in err and "moved aside" in err
    assert f"resuming from {tmp_path / 'ck/prev.pt'} at epoch 1" in err
    assert "weights_only" not in err and "Traceback" not in err
    assert len(list((tmp_path / "ck").glob("last.pt.bad-*"))) == 1
    assert (tmp_path / "out/layerwise.csv").read_bytes() == want  # the same numbers as the uninterrupted run


def test_run_json_identity_and_manifest(tmp_path):
    from lpa_core import runs

    assert tiny_job(tmp_path, "--scale", "quick", "--exp", "table1") == 0
    info = runs.verify_run(tmp_path / "out")
    assert (info["track"], info["scale"], info["experiment"]) == ("surfaces", "quick", "table1")
    assert set(info["manifest"]) == {"layerwise.csv", "history.csv", "summary.csv", "grid.npz", "coeffs.csv"}
    assert info["config_hash"] == runs.config_hash(info["config"])
    threads = dict(info["config"], threads=8)  # an execution key: not part of what the run computes
    assert runs.config_hash(threads) == info["config_hash"] and runs.config_changes(info["config"], threads) == []
    assert runs.config_changes(info["config"], dict(info["config"], lr=0.02)) == ["lr 0.01 -> 0.02"]
    assert not list((tmp_path / "out").glob(".*")) and not list((tmp_path / "ck").glob(".lock"))  # lock released


def test_runs_verify_and_migrate_commands(tmp_path, capsys):
    import shutil

    old = tmp_path / "runs/quick/table1/resmlp/lpa"
    shutil.copytree(ROOT / "results/runs/quick/table1/resmlp/lpa", old)
    info = json.loads((old / "run.json").read_text())
    if "manifest" in info:  # the committed runs are migrated already: make an older folder of this one
        (old / "run.json").write_text(json.dumps({k: v for k, v in info.items() if k not in
                                                  ("manifest", "track", "scale", "experiment", "config_hash")}))
    assert main(["runs", "verify", str(tmp_path / "runs")]) == 1
    assert "no manifest" in capsys.readouterr().err
    assert main(["runs", "migrate", str(tmp_path / "runs")]) == 0  # scale from the path: runs/<scale>/
    assert json.loads((old / "run.json").read_text())["scale"] == "quick"
    assert main(["runs", "verify", str(old)]) == 0
    (old / "summary.csv").write_text("x\n")
    capsys.readouterr()
    assert main(["runs", "verify", str(tmp_path / "runs")]) == 1
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "summary.csv" in lines[0]
    assert main(["runs", "migrate", str(old), "--scale", "paper"]) == 1  # damaged: migrate only verifies it


def test_provenance_is_dirty_only_when_the_code_changes(tmp_path):
    from lpa_core import io

    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tmp_path, check=True,
                                    capture_output=True)
    (tmp_path / "lpa_core").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "lpa_core/a.py").write_text("x = 1\n")
    (tmp_path / "results/t.csv").write_text("a\n1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "c")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "results/t.csv").write_text("a\n2\n")  # a run rewrote a tracked result file
    assert io.git_commit(tmp_path) == (sha, None)
    (tmp_path / "lpa_core/a.py").write_text("x = 2\n")
    commit, diff = io.git_commit(tmp_path)
    assert commit == sha + "-dirty" and len(diff) == 16
    (tmp_path / "lpa_core/a.py").write_text("x = 3\n")
    assert io.git_commit(tmp_path)[1] != diff  # the hash is of the change itself
