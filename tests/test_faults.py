"""The fault matrix of issue 11: no fault in a run folder, a config or a process may change a table silently.

On a tiny quick-scale workflow (Table 1 only: two surfaces, two paradigms, one seed), each cell damages one thing,
runs the documented recovery command and asserts one of the two allowed outcomes:

  recovered  the outputs (Table 1's CSV, every run's layerwise.csv and grid arrays) are identical to the clean
             ones, and a damaged or stale run was named on stderr
  refused    the command exits non-zero with one line naming the file

Recovery commands: `snakemake` (the normal call: a damaged or stale cached run is re-trained, lpa_core.runs and
workflow/rules/common.smk run_state), `snakemake --profile profiles/regenerate` (never trains: the run is left
out and named, every output is left as it was), `snakemake --unlock` then `snakemake` after a killed workflow.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_workflow import ROOT, workdir  # noqa: E402

RUNS = "results/runs/quick/table1/resmlp"
TABLE = "results/tables/quick/table1.csv"
CKPTS = "checkpoints/quick/table1/resmlp"
QUICK = ["--cores", "2", "--config", "scale=quick"]


def tiny(cfg, epochs=2, n_train=200, paradigms=("simultaneous", "lpa"), datasets=("saddle", "high_freq")):
    cfg["table1"].update(datasets=list(datasets), paradigms=list(paradigms))
    cfg["scales"]["quick"]["tracks"] = ["table1"]
    cfg["scales"]["quick"]["table1"] = {"seeds": [0], "train": {
        "epochs": epochs, "n_train": n_train, "n_test": 200, "batch_size": 50, "eval_every": 1, "grid": 8,
        "depth": 3, "ckpt_every_s": 0}}


def snakemake(wd, *args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([str(Path(sys.executable).with_name("snakemake")), *args], cwd=wd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def build(tmp, edit, targets=(TABLE,)):
    wd = workdir(tmp, edit)
    r = snakemake(wd, *targets, *QUICK)
    assert r.returncode == 0, r.stderr[-3000:]
    return wd


def fresh_copy(src, dst):
    """A copy of a finished workflow folder without Snakemake's metadata: every run is a cached run."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".snakemake"))
    return dst


def outputs(wd):
    """What may never change silently: Table 1's CSV, each run's layerwise.csv bytes and grid arrays."""
    out = {TABLE: (wd / TABLE).read_bytes()}
    for d in sorted((wd / RUNS).iterdir()):
        out[f"{d.name}/layerwise.csv"] = (d / "layerwise.csv").read_bytes()
        with np.load(d / "grid.npz") as g:
            out[f"{d.name}/grid"] = {k: g[k].tobytes() for k in g.files}
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    wd = build(tmp_path_factory.mktemp("clean"), tiny)
    return wd, outputs(wd)


def damage(path, fault):
    data = path.read_bytes()
    if fault == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif fault == "deleted":
        path.unlink()
    else:
        path.write_bytes(np.random.default_rng(0).bytes(100))


FILES = {"layerwise": "layerwise.csv", "history": "history.csv", "summary": "summary.csv", "run.json": "run.json",
         "grid": "grid.npz"}
FAULTS = ["truncated", "deleted", "garbage"]
# through the workflow: every file once, the faults spread over them (each cell re-trains one job); every
# (file, fault) cell goes through the detector itself in test_every_damaged_run_file_is_named
RETRAIN = [("layerwise", "truncated"), ("run.json", "garbage"), ("grid", "deleted"), ("history", "garbage"),
           ("summary", "truncated")]


@pytest.mark.parametrize("kind,fault", [pytest.param(k, f, id=f"{k}-{f}") for k, f in RETRAIN])
def test_damaged_run_file_is_retrained_to_identical_outputs(clean, tmp_path, kind, fault):
    ref, want = clean
    wd = fresh_copy(ref, tmp_path / "wd")
    path = wd / RUNS / "lpa" / FILES[kind]
    damage(path, fault)
    r = snakemake(wd, TABLE, *QUICK)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(rf"run {RUNS}/lpa is (damaged|missing)", r.stderr) or fault == "deleted" and kind == "run.json", r.stderr[-2000:]
    assert "run results/runs/quick/table1/resmlp/simultaneous" not in r.stderr  # only the damaged run is named
    assert outputs(wd) == want
    assert "Nothing to be done" in snakemake(wd, "-n", TABLE, *QUICK).stdout  # the re-trained run counts as fresh


@pytest.mark.parametrize("kind", FILES)
@pytest.mark.parametrize("fault", FAULTS)
def test_every_damaged_run_file_is_named(clean, tmp_path, kind, fault):
    """The run contract's check (what the workflow and the table command call) names the damaged file; the
    untouched run beside it passes."""
    from lpa_core.runs import RunError, verify_run

    wd = fresh_copy(clean[0], tmp_path / "wd")
    damage(wd / RUNS / "lpa" / FILES[kind], fault)
    verify_run(wd / RUNS / "simultaneous")
    with pytest.raises(RunError, match=re.escape(FILES[kind])):
        verify_run(wd / RUNS / "lpa")


@pytest.mark.parametrize("kind,fault", [("layerwise", "truncated"), pytest.param("summary", "garbage", marks=pytest.mark.slow)])
def test_regenerate_leaves_a_damaged_run_out_and_names_it(clean, tmp_path, kind, fault):
    """profiles/regenerate never trains: the damaged run is left out and named (its track with it), and a target
    that needs it fails naming the run; the table is never rebuilt from it."""
    ref, want = clean
    wd = fresh_copy(ref, tmp_path / "wd")
    damage(wd / RUNS / "lpa" / FILES[kind], fault)
    dry = snakemake(wd, "-n", "--profile", "profiles/regenerate", *QUICK[2:])
    assert dry.returncode == 0 and not re.search(r"^train_\w+\s+\d+$", dry.stdout, re.M), dry.stdout[-2000:]
    line = next(l for l in dry.stderr.splitlines() if l.startswith(f"cached_only: table1: left out {RUNS}/lpa:"))
    assert "damaged" in line and FILES[kind] in line
    r = snakemake(wd, "--profile", "profiles/regenerate", TABLE, *QUICK[2:])
    assert r.returncode != 0 and f"cached_only: run {RUNS}/lpa is damaged: {RUNS}/lpa/{FILES[kind]}" in r.stderr, r.stderr[-2000:]
    assert (wd / TABLE).read_bytes() == want[TABLE]  # the table was not rebuilt from the damaged run
    assert not (wd / RUNS / "lpa" / ".fresh").exists()  # and the run was not re-trained (nor taken as fresh)


@pytest.mark.parametrize("fault", ["truncated", "deleted", "garbage"])
def test_table_command_refuses_a_damaged_run_in_one_line(clean, tmp_path, fault):
    """The aggregation entry point itself (what the workflow's table rule runs) never reads a damaged run."""
    ref, _ = clean
    wd = fresh_copy(ref, tmp_path / "wd")
    damage(wd / RUNS / "lpa/layerwise.csv", fault)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "lpa_core", "table", "table1", "--runs", f"{RUNS}/simultaneous", f"{RUNS}/lpa",
                        "--paper", "config/paper_results.csv", "--out-csv", "t.csv", "--out-md", "t.md"],
                       cwd=wd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "layerwise.csv" in lines[0], r.stderr
    assert not (wd / "t.csv").exists()


@pytest.mark.parametrize("fault", ["garbage", pytest.param("truncated", marks=pytest.mark.slow),
                                   pytest.param("deleted", marks=pytest.mark.slow)])
def test_damaged_checkpoint_is_moved_aside_and_the_run_ends_identical(clean, tmp_path, fault):
    """A killed job (its outputs gone) whose checkpoint is then damaged: the restart names the checkpoint, moves it
    aside, resumes from prev.pt (or starts afresh) and ends with the clean numbers."""
    ref, want = clean
    wd = fresh_copy(ref, tmp_path / "wd")
    for f in (wd / RUNS / "lpa").iterdir():
        f.unlink()
    damage(wd / CKPTS / "lpa/last.pt", fault)
    r = snakemake(wd, TABLE, *QUICK)
    assert r.returncode == 0, r.stderr[-3000:]
    assert outputs(wd) == want
    log = (wd / "logs/quick/table1/resmlp/lpa.log").read_text()
    if fault != "deleted":
        assert f"checkpoint {CKPTS}/lpa/last.pt: unreadable or partial" in log and "moved aside" in log
        assert list((wd / CKPTS / "lpa").glob("last.pt.bad-*"))
        assert "resuming from" in log and "prev.pt" in log
    assert "weights_only=False" not in log and "Traceback" not in log


@pytest.mark.slow
def test_changed_recipe_retrains_and_names_the_runs(clean, tmp_path):
    """A changed learning rate makes both cached runs stale: `snakemake -n` says so and schedules them, the real
    run re-trains them; putting the recipe back makes them stale again, and re-training gives the clean numbers."""
    ref, want = clean
    wd = fresh_copy(ref, tmp_path / "wd")
    lr = ["scales={quick: {table1: {train: {lr: 0.02}}}}"]
    dry = snakemake(wd, "-n", TABLE, *QUICK, *lr)
    assert re.search(r"^train_surfaces\s+2$", dry.stdout, re.M), dry.stdout[-2000:]
    assert f"run {RUNS}/lpa is stale: lr 0.01 -> 0.02" in dry.stderr
    r = snakemake(wd, TABLE, *QUICK, *lr)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (wd / TABLE).read_bytes() != want[TABLE]
    r = snakemake(wd, TABLE, *QUICK)  # the recipe back: the lr 0.02 runs are stale now
    assert r.returncode == 0 and f"run {RUNS}/lpa is stale: lr 0.02 -> 0.01" in r.stderr
    assert outputs(wd) == want


def test_narrowed_datasets_retrain_with_identical_numbers(clean, tmp_path):
    """table1.datasets narrowed to one surface: each run is stale (datasets) and re-trained; the table shows only
    that surface, with the numbers the two-surface runs had for it (a run in a group equals the run alone)."""
    ref, want = clean
    wd = fresh_copy(ref, tmp_path / "wd")
    cfg = yaml.safe_load((wd / "config/config.yaml").read_text())
    cfg["table1"]["datasets"] = ["saddle"]
    (wd / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(wd, TABLE, *QUICK)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"run {RUNS}/lpa is stale: datasets saddle,high_freq -> saddle" in r.stderr
    import pandas as pd

    old, new = pd.read_csv(ref / TABLE), pd.read_csv(wd / TABLE)
    assert set(new.dataset) == {"saddle"}
    pd.testing.assert_frame_equal(new.reset_index(drop=True), old[old.dataset == "saddle"].reset_index(drop=True))


# --- processes ------------------------------------------------------------------------------------------------------

LONG = dict(epochs=150, n_train=4000, paradigms=("lpa",), datasets=("saddle",))


@pytest.fixture(scope="module")
def long_clean(tmp_path_factory):
    wd = build(tmp_path_factory.mktemp("long"), lambda c: tiny(c, **LONG))
    return wd, outputs(wd)


def start(wd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.Popen([str(Path(sys.executable).with_name("snakemake")), TABLE, *QUICK], cwd=wd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def trainer_pid(wd, proc, deadline=240):
    """The pid of the training job once it has written a checkpoint (from its run lock, lpa_core.train.run_lock)."""
    lock, ck = wd / RUNS / "lpa/.lock", wd / CKPTS / "lpa/last.pt"
    end = time.time() + deadline
    while time.time() < end:
        if ck.exists() and lock.exists():
            m = re.match(r"pid (\d+)", lock.read_text())
            if m:
                return int(m[1])
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.02)
    raise AssertionError("the training job never checkpointed")


def gone(pid, within=10):
    end = time.time() + within
    while time.time() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in "ZX":
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["trainer", "snakemake"])
def test_killed_job_or_workflow_resumes_to_identical_outputs(long_clean, tmp_path, victim):
    """SIGKILL to the training job (Snakemake fails the job), or to Snakemake alone, not its process group (the
    job stops by itself within a second: --parent-pid): `snakemake --unlock` and the same command resume the run
    from its checkpoint and end with the clean outputs."""
    ref, want = long_clean
    wd = workdir(tmp_path, lambda c: tiny(c, **LONG))
    proc = start(wd)
    pid = trainer_pid(wd, proc)
    os.kill(pid if victim == "trainer" else proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=300) != 0
    assert gone(pid), "the training job outlived the killed workflow"
    assert snakemake(wd, "--unlock").returncode == 0
    r = snakemake(wd, TABLE, *QUICK)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in (wd / "logs/quick/table1/resmlp/lpa.log").read_text()
    assert outputs(wd) == want


@pytest.mark.slow
def test_two_workflows_at_once(long_clean, tmp_path):
    """A second Snakemake in the same folder stops at once (Snakemake's directory lock); the first ends clean."""
    ref, want = long_clean
    wd = workdir(tmp_path, lambda c: tiny(c, **LONG))
    proc = start(wd)
    trainer_pid(wd, proc)
    second = snakemake(wd, TABLE, "--forcerun", TABLE, *QUICK)  # a second workflow with work to do
    assert second.returncode != 0 and "Directory cannot be locked" in second.stderr + second.stdout
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    assert outputs(wd) == want


def test_two_trainers_of_one_run_the_second_stops_in_one_line(tmp_path):
    """What Snakemake's lock cannot see (after --unlock, or two folders sharing a run): the per-run lock."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "lpa_core", "train", "--out", "out", "--paradigm", "lpa", "--datasets", "saddle",
           "--epochs", "50", "--n_train", "2000", "--n_test", "200", "--batch_size", "50", "--grid", "8",
           "--ckpt_every_s", "0"]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.time() + 120
        while not (tmp_path / "checkpoints/out/last.pt").exists():
            assert time.time() < end and first.poll() is None
            time.sleep(0.05)
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and "out/.lock: locked by pid" in lines[0] and str(first.pid) in lines[0], r.stderr
    finally:
        first.kill()
        first.wait()
