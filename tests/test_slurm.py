"""Cluster submission: a slice of the real DAG through profiles/slurm on a real single-node Slurm
(tests/slurm/cluster.sh), and the per-rule resources of workflow/rules/resources.smk (runtime grows per attempt,
GPU jobs get their own GPU locally).

The Slurm test skips when Slurm is not installed or cannot be started, unless LPA_REQUIRE_SLURM is set (CI), in
which case a missing cluster is a failure (cluster.sh then installs slurm-wlm and munge with apt-get).
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_workflow import ROOT, tiny, workdir  # noqa: E402

CLUSTER = ROOT / "tests/slurm/cluster.sh"
REQUIRED = bool(os.environ.get("LPA_REQUIRE_SLURM"))
PARADIGMS = ["simultaneous", "lpa"]  # two jobs: one wave on a 2-CPU node


def snakemake(wd, *args):
    """snakemake in wd; the jobs (here and inside Slurm, which exports this environment) use this interpreter."""
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run([os.path.join(bindir, "snakemake"), *args], cwd=wd, env=env, capture_output=True,
                          text=True, timeout=900)


def _cluster(cmd):
    return subprocess.run(["bash", str(CLUSTER), cmd], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running local Slurm; stopped afterwards if this fixture started it."""
    def unavailable(reason):
        if REQUIRED:
            pytest.fail(f"LPA_REQUIRE_SLURM is set but {reason}")
        pytest.skip(reason)

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        unavailable("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    if not REQUIRED and not all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "squeue", "munged")):
        unavailable("Slurm is not installed (apt-get install slurm-wlm munge, or set LPA_REQUIRE_SLURM=1)")
    if os.geteuid() != 0:
        unavailable("tests/slurm/cluster.sh needs root to start slurmctld/slurmd")
    was_up = _cluster("status").returncode == 0
    if not was_up:
        r = _cluster("start")
        if r.returncode != 0:
            unavailable(f"the local Slurm cluster did not start:\n{r.stdout}{r.stderr}")
    yield
    if not was_up:
        _cluster("stop")
        # no config of a stopped cluster stays behind: every later Snakemake start would wait 10 s on it
        conf = Path("/etc/slurm/slurm.conf")
        assert not (conf.is_file() and "tests/slurm/cluster.sh" in conf.read_text()), f"{conf} left behind by cluster.sh stop"


def slurm_profile(wd):
    """profiles/slurm of the copy, pointed at the local cluster: partition debug, no account, quick status checks."""
    path = wd / "profiles/slurm/config.yaml"
    prof = yaml.safe_load(path.read_text())
    prof["default-resources"]["slurm_partition"] = os.environ.get("LPA_SLURM_PARTITION", "debug")
    prof["default-resources"].pop("slurm_account", None)  # no accounting database: no accounts
    prof["slurm-init-seconds-before-status-checks"] = 2
    prof["latency-wait"] = 5
    path.write_text(yaml.safe_dump(prof, sort_keys=False))


@pytest.mark.slurm
@pytest.mark.slow
def test_slice_of_the_dag_runs_through_slurm(tmp_path, slurm_cluster):
    def edit(cfg):
        tiny(cfg)
        cfg["table1"]["paradigms"] = PARADIGMS

    wd = workdir(tmp_path, edit)
    cfg = yaml.safe_load((wd / "config/config.yaml").read_text())
    shutil.copy(ROOT / "environment.yml", wd / "environment.yml")  # the rules' conda: directive names it
    slurm_profile(wd)
    table = "results/tables/quick/table1.csv"
    # the training jobs ask for a GPU as a GPU rule does (Snakemake's `gpu`/`gpu_model` resources; the local
    # cluster offers 2 of type `fake`, or the machine's real ones); the training itself stays on the CPU
    model = "gpu" if list(Path("/dev").glob("nvidia[0-9]*")) else "fake"
    gpu = ["--set-resources", "train_surfaces:gpu=1", f"train_surfaces:gpu_model={model}"]
    t0 = time.monotonic()
    r = snakemake(wd, "--profile", "profiles/slurm", "--config", "scale=quick", *gpu, "--", table)
    elapsed = time.monotonic() - t0
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    print(f"slurm slice: {elapsed:.1f}s")

    # every job went through sbatch, and Slurm itself (slurmctld keeps finished jobs for MinJobAge; there is no
    # accounting database) says they completed, with the resources the rules asked for
    submitted = dict(re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", out))
    assert len(submitted) == len(PARADIGMS) + 1, out[-4000:]  # the training jobs and table1
    minutes = {rule: res.get("runtime", 30) for rule, res in cfg["resources"].items()}  # 30: the profile's default
    for jobid, log in submitted.items():
        job = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
        assert "JobState=COMPLETED" in job, job
        rule = re.search(r"Comment=rule_(train_surfaces|table)", job).group(1)
        limit = minutes.get(rule, 30)
        assert f"TimeLimit={limit // 60:02d}:{limit % 60:02d}:00" in job, job  # first attempt: runtime as is
        if rule == "train_surfaces":
            assert f"TresPerJob=gres:gpu:{model}:1" in job, job  # sbatch --gpus=<model>:1
        else:
            assert "gres:gpu" not in job, job
        assert Path(log).is_file() and str(Path(log)).startswith(str(wd / ".snakemake/slurm_logs"))
    for p in PARADIGMS:
        logs = list((wd / f".snakemake/slurm_logs/rule_train_surfaces/resmlp_{p}").glob("*.log"))
        assert len(logs) == 1 and logs[0].stem in submitted
        assert "rule train_surfaces" in logs[0].read_text()  # the jobstep ran the job inside the allocation
    assert list((wd / ".snakemake/slurm_logs/rule_table").rglob("*.log"))

    # the table is right: its means are the seeds' final-depth errors in the runs' own CSVs
    tab = pd.read_csv(wd / table)
    assert set(tab.paradigm) == set(PARADIGMS) and set(tab.dataset) == {"saddle", "high_freq"}
    assert (tab.n_seeds == 2).all() and tab["mean"].notna().all()
    assert tab.loc[tab.paradigm == "lpa", "paper_value"].notna().all()
    runs = pd.concat(pd.read_csv(wd / f"results/runs/quick/table1/resmlp/{p}/layerwise.csv") for p in PARADIGMS)
    final = runs[runs.depth == runs.depth.max()]
    expect = final.groupby(["dataset", "paradigm", "metric"]).value.mean().rename("expect").reset_index()
    got = tab[tab.metric.isin(["mse", "mae"])].merge(expect, on=["dataset", "paradigm", "metric"])
    assert len(got) == 2 * len(PARADIGMS) * 2
    assert (abs(got["mean"] - got["expect"]) <= 1e-9 * abs(got["expect"]).clip(lower=1)).all(), got

    # resuming is a no-op once everything is there
    again = snakemake(wd, "--profile", "profiles/slurm", "--config", "scale=quick", "-n", "--", table)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


RESOURCE_SNAKEFILE = """
configfile: "config.yaml"
include: "{rules}/resources.smk"

rule flaky:
    output: "flaky.txt"
    threads: rule_threads("flaky")
    resources: **rule_resources("flaky")
    shell: "echo {{resources.runtime}} {{threads}} >> attempts.txt; if [ ! -e attempts.ok ]; then touch attempts.ok; exit 1; fi; cp attempts.txt {{output}}"

rule gpu_job:
    output: "gpu.txt"
    resources: **rule_resources("gpu_job")
    shell: gpu_claim("gpu_job") + "echo $CUDA_VISIBLE_DEVICES {{resources.gpu}} {{resources.gpu_model}} > {{output}}"
"""


def test_rule_resources_runtime_grows_per_attempt_and_gpu_jobs_get_their_own_gpu(tmp_path):
    (tmp_path / "Snakefile").write_text(RESOURCE_SNAKEFILE.format(rules=ROOT / "workflow/rules"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"resources": {
        "flaky": {"runtime": 7, "mem_mb": 100, "threads": 2},
        "gpu_job": {"runtime": 5, "gpu": 1, "gpu_model": "a100"}}}))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "fake0"}  # the local profile counts and hands out these
    exe = Path(sys.executable).with_name("snakemake")
    r = subprocess.run([str(exe), "--cores", "2", "--retries", "1", "--workflow-profile", "none",
                        "--resources", "gpu=1", "--", "flaky.txt", "gpu.txt"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "flaky.txt").read_text().split("\n")[:2] == ["7 2", "14 2"]  # attempt 2 gets twice the time
    assert (tmp_path / "gpu.txt").read_text().split() == ["fake0", "1", "a100"]

