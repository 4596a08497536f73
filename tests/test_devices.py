"""GPUs used without editing anything (issue 14): `gpu: auto` (the vision and LM training rules' default) gives a
job one GPU on a machine that has GPUs (one job per GPU through profiles/default and gpu_claim.sh) or under a
cluster executor (profiles/slurm), and the CPU otherwise; a paper-scale run that will train on CPUs or on a
cluster says once, before its first job, what it starts and what it will cost. GPUs are faked through
CUDA_VISIBLE_DEVICES, which the profile, the rules and gpu_claim.sh all read first."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ("python -m lpa_core train --exp table2 --arch resnet10_w16 --paradigm {p} --datasets fashion_mnist --seeds 0 "
         "--batch_size 50 --epochs 2 --train_subset 500 --test_subset 250 --out runs/{p}")
SNAKEFILE = """
configfile: "config.yaml"
include: "{rules}/resources.smk"

rule all:
    input: expand("out/{{p}}.txt", p=["simultaneous", "lpa"])

rule train_vision:
    output: "out/{{p}}.txt"
    resources: **rule_resources("train_vision")
    params: device=lambda w: "cuda" if rule_gpus("train_vision") else "cpu"
    shell: gpu_claim("train_vision") + "sleep 1; echo {{params.device}} ${{{{CUDA_VISIBLE_DEVICES:-none}}}} > {{output}}; echo {train} > /dev/null"
"""


def workdir(tmp_path, scale="paper"):
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(rules=ROOT / "workflow/rules", train=TRAIN.format(p="{wildcards.p}")))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"scale": scale, "resources": {"train_vision": {"gpu": "auto"}}}))
    shutil.copytree(ROOT / "profiles/default", tmp_path / "profiles/default")  # the local profile: GPU count, claim
    return tmp_path


def snakemake(wd, *args, gpus=None):
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SNAKEMAKE_PROFILE")}
    env.update(PYTHONPATH=str(ROOT), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus  # "" = none; without it the rules ask nvidia-smi (none on CI)
    exe = Path(sys.executable).with_name("snakemake")
    return subprocess.run([str(exe), *args], cwd=wd, env=env, capture_output=True, text=True, timeout=600)


def outputs(wd):
    return sorted((wd / "out" / f"{p}.txt").read_text().split() for p in ("simultaneous", "lpa"))


def test_machine_with_gpus_runs_one_job_per_gpu_without_a_config_edit(tmp_path):
    wd = workdir(tmp_path, scale="quick")
    r = snakemake(wd, "--cores", "4", gpus="fake0,fake1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert outputs(wd) == [["cuda", "fake0"], ["cuda", "fake1"]]  # each job its own (fake) GPU, at the same time
    assert "lpa-bench: paper scale" not in r.stderr


def test_machine_without_gpus_trains_on_the_cpu_and_announces_the_paper_scale_once(tmp_path):
    wd = workdir(tmp_path)
    r = snakemake(wd, "--cores", "2", gpus="")
    assert r.returncode == 0, r.stderr[-3000:]
    assert outputs(wd) == [["cpu", "none"], ["cpu", "none"]]
    err = r.stderr
    assert err.count("lpa-bench: paper scale, 2 training jobs (2 train_vision) on this machine's CPUs") == 1, err[-3000:]
    assert err.index("lpa-bench: paper scale") < err.index("rule train_vision")  # before the first job
    assert "total vision: 2 jobs" in err and "GPU-hours" in err  # the estimate (lpa_core.cost) of those jobs
    again = snakemake(wd, "--cores", "2", gpus="")  # nothing left to run: nothing announced
    assert again.returncode == 0 and "lpa-bench: paper scale" not in again.stderr
    (tmp_path / "q").mkdir()
    quick = snakemake(workdir(tmp_path / "q", scale="quick"), "--cores", "2", gpus="")
    assert quick.returncode == 0 and "lpa-bench" not in quick.stderr  # only the paper scale is announced


def test_cluster_executor_gives_each_job_a_gpu(tmp_path):
    """Under a cluster profile (executor: slurm) the jobs ask for a GPU even where Snakemake itself runs without
    one; the dry run shows the resources it would submit with. Needs Snakemake's Slurm executor plugin (the
    `slurm` extra): skipped without it unless LPA_REQUIRE_SLURM is set (CI)."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None and not os.environ.get("LPA_REQUIRE_SLURM"):
        pytest.skip("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    wd = workdir(tmp_path)
    (wd / "profiles/cluster").mkdir(parents=True)
    (wd / "profiles/cluster/config.yaml").write_text(yaml.safe_dump({"executor": "slurm", "jobs": 2}))
    r = snakemake(wd, "-n", "--profile", "profiles/cluster", gpus="")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("gpu=1") + r.stderr.count("gpu=1") >= 2, (r.stdout + r.stderr)[-3000:]
    local = snakemake(wd, "-n", gpus="")
    assert "gpu=1" not in local.stdout + local.stderr
