"""The Snakemake workflow: schema validation, dry runs of both scales, and a tiny real run end to end."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
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
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    n_paradigms = len(cfg["table1"]["paradigms"])
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", r.stdout, re.M)}
    assert jobs.get("train_surfaces") == n_paradigms, jobs
    assert jobs.get("train_vision") == vision_jobs(cfg, scale), jobs
    assert {"table", "vision_figures"} <= set(jobs) and "table4.csv" not in r.stdout
    assert all(f"{t}.md" in r.stdout for t in ("table1", "ancre", "table2", "table3", "sec54", "inference", "fig6", "table5",
                                               "vision_fair", "lm_fair"))
    assert "fetch_data" not in jobs  # a guard inside each training job, not a job of `all`
    lm = {**cfg["lm"], **cfg["scales"][scale].get("lm", {})}
    eq = f"lm/{lm['arch']}/simultaneous/eqflops/seed0/run.json"  # issue 12's equal compute (lm.eqflops)
    assert (eq in r.stdout) == bool(lm.get("eqflops"))
    assert (f"--exp eqflops --arch {lm['arch']} --paradigm simultaneous" in r.stdout) == bool(lm.get("eqflops"))


def vision_jobs(cfg, scale):
    """Vision training jobs the config asks for: Table 2's grid, plus Sec 5.4 unit sizes and Fig 10 learning rates
    that are not a Table 2 run already."""
    v = {**cfg["vision"], **cfg["scales"][scale].get("vision", {})}
    archs = v["archs"] if isinstance(v["archs"], list) else list(v["archs"].values())
    table2 = len(archs) * len(v["datasets"]) * len(v["paradigms"])
    k0 = v.get("train", {}).get("group_size", cfg["vision"]["train"].get("group_size", 2))
    ablation = v["ablation"]["datasets"]
    extra_groups = [k for k in v["group_sizes"] if not (k == k0 and "lpa_grouped" in v["paradigms"])]
    extra_lrs = [f for f in v["lr_sweep"] if f != 1]
    in_t2 = set(ablation) <= set(v["datasets"])
    n_base = 0 if in_t2 else 2  # simultaneous and lpa beside the unit sizes
    eqflops = len(archs) * len(v["datasets"]) if v.get("eqflops") and {"simultaneous", "lpa"} <= set(v["paradigms"]) else 0
    return (table2 + len(ablation) * (len(extra_groups) + len(extra_lrs) + n_base) + eqflops) * len(v["seeds"])


def test_imagenet_table4_only_when_configured(tmp_path):
    r = snakemake(workdir(tmp_path, lambda c: c["vision"].update(imagenet_dir="/nonexistent/imagenet")), "-n")
    assert r.returncode == 0, r.stderr
    assert "results/tables/table4.md" in r.stdout and "table2/imagenet" not in r.stdout
    assert "table4/imagenet/vit12/lpa/seed0" in r.stdout


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
    cfg["scales"]["quick"]["ancre"]["vision"] = {"archs": ["resnet10_w16"], "datasets": ["fashion_mnist"], "seeds": [0],
                                                 "runs": {"simultaneous": ["cascade", "ancre"]}}  # one ANCRé vision job
    cfg["scales"]["quick"]["ancre_case"] = {"seeds": [0]}
    # fair track: Simultaneous and LPA, 2 trials, Simultaneous at LPA's FLOPs; the claims map over one domain
    cfg["scales"]["quick"]["fair"] = {"paradigms": ["simultaneous", "lpa"], "trials": 2, "seeds": [0], "match": ["flops"],
                                      "train": {"n_val": 300}, "map": {"paradigms": ["simultaneous", "lpa"], "seeds": [0],
                                                                       "variants": {"domain": ["pi"]}, "match": ["flops"]}}
    # language model: two paradigms under cascade, one under ANCRé, a few batches
    cfg["lm"].update(paradigms=["simultaneous", "lpa"], ancre_paradigms=["simultaneous"])
    lm = cfg["scales"]["quick"]["lm"]
    lm["ancre_paradigms"] = ["simultaneous"]
    lm["train"].update(epochs=1, epoch_batches=4, eval_tokens=1024, n_generate=4, vocab_size=512)
    lm["eqflops"] = True  # Simultaneous at LPA's FLOPs: read by lm_fair, not by Table 5
    # vision: one model, two paradigms, tiny subsets, one epoch; Sec 5.4 adds one lpa_grouped job, Fig 10 none
    cfg["vision"].update(paradigms=["simultaneous", "lpa"], table3={"arch": "resnet18", "paradigms": ["simultaneous", "lpa"]})
    cfg["scales"]["quick"]["vision"] = {
        "archs": {"resnet18": "resnet10_w16"}, "datasets": ["fashion_mnist"], "seeds": [0],
        "ablation": {"arch": "resnet18", "datasets": ["fashion_mnist"]}, "group_sizes": [2], "lr_sweep": [1],
        "recipes": {"resnet": {"lr": 0.05, "batch_size": 50, "epochs": 1}},
        "train": {"train_subset": 100, "test_subset": 100, "n_embed": 40}}


def test_tiny_real_run_end_to_end(tmp_path):
    wd = workdir(tmp_path, tiny)
    r = snakemake(wd, "--cores", "2", "--config", "scale=quick")
    assert r.returncode == 0, r.stderr[-3000:]
    table = pd.read_csv(wd / "results/tables/quick/table1.csv")
    assert set(table.paradigm) == {"simultaneous", "lpa", "adaptive_lpa"}
    assert set(table.dataset) == {"saddle", "high_freq"} and set(table.metric) >= {"mse", "mae"}
    assert (table.n_seeds == 2).all() and table["mean"].notna().all()
    assert table.loc[table.paradigm == "lpa", "paper_value"].notna().all()  # the paper's value stands beside ours
    assert "±" in (wd / "results/tables/quick/table1.md").read_text()
    for name in ("fig2_surfaces.png", "fig3_layerwise_saddle.png", "fig3_layerwise_high_freq.png"):
        assert (wd / "figures/quick" / name).stat().st_size > 3_000
    ancre = pd.read_csv(wd / "results/tables/quick/ancre.csv")
    assert set(ancre.topology) == {"cascade", "ancre", "ancre_add"} and ancre["mean"].notna().all()  # ancre_add: LM rows
    assert set(ancre[ancre.arch == "lm_tiny"].topology) == {"cascade", "ancre", "ancre_add"}  # lm.ancre_variants
    assert (wd / "figures/quick/ancre_fig6_coeffs.png").stat().st_size > 3_000
    assert "ANCR" in (wd / "results/report_quick.html").read_text()
    t2 = pd.read_csv(wd / "results/tables/quick/table2.csv")
    assert set(t2.paradigm) == {"simultaneous", "lpa"} and set(t2.arch) == {"resnet10_w16"} and t2["mean"].notna().all()
    assert (t2.paper_arch == "resnet18").all() and t2.paper_value.notna().all()
    assert "lpa_grouped_k2" in set(pd.read_csv(wd / "results/tables/quick/sec54.csv").paradigm)
    for name in ("fig4_layerwise_fashion_mnist.png", "fig5_tsne_fashion_mnist_resnet10_w16.png",
                 "fig6_curves_fashion_mnist.png", "fig10_lr.png", "fig_inference.png"):
        assert (wd / "figures/quick" / name).stat().st_size > 3_000, name
    assert "Table 2: ResNet-18/34" in (wd / "results/report_quick.html").read_text()
    vf = pd.read_csv(wd / "results/tables/quick/vision_fair.csv")  # eqflops on (vision.eqflops; the override leaves it)
    assert set(vf.view) == {"time_to_target", "equal_compute"} and "equal_flops" in set(vf.protocol)
    assert "dev_loss" in set(pd.read_csv(wd / "results/runs/quick/lm/lm_tiny/lpa/cascade/seed0/history.csv").metric)
    lf = pd.read_csv(wd / "results/tables/quick/lm_fair.csv")
    assert "equal_flops" in set(lf.protocol) and (wd / "results/runs/quick/lm/lm_tiny/simultaneous/eqflops/seed0/run.json").is_file()
    fair = pd.read_csv(wd / "results/tables/quick/fair/table1_fair.csv")
    assert {"simultaneous", "lpa"} <= set(fair.paradigm) and (wd / "figures/quick/claims_map.png").stat().st_size > 3_000
    t5 = pd.read_csv(wd / "results/tables/quick/table5.csv")
    assert {"simultaneous", "lpa"} <= set(t5.paradigm) and {"cascade", "ancre"} <= set(t5.topology)
    again = snakemake(wd, "-n", "--config", "scale=quick")  # nothing left to do
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_killed_workflow_keeps_finished_runs_and_resumes_the_rest(tmp_path):
    """Kill snakemake while the second training job is mid-way: a rerun keeps the finished job's files untouched,
    resumes the killed one from its checkpoint, and ends with the numbers of an uninterrupted run."""
    def edit(cfg):
        tiny(cfg)
        cfg["table1"].update(datasets=["saddle"], paradigms=["simultaneous", "lpa"])
        cfg["scales"]["quick"]["table1"] = {"seeds": [0], "train": {
            "epochs": 20, "n_train": 600, "n_test": 200, "batch_size": 20, "eval_every": 5, "grid": 8,
            "ckpt_every_s": 0}}
    wd = workdir(tmp_path, edit)
    runs = wd / "results/runs/quick/table1/resmlp"
    first, second = [runs / p for p in ("simultaneous", "lpa")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    exe = str(Path(sys.executable).with_name("snakemake"))
    targets = [str((d / "layerwise.csv").relative_to(wd)) for d in (first, second)]
    proc = subprocess.Popen([exe, *targets, "--cores", "1", "--config", "scale=quick"], cwd=wd, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "snakemake.err", "w"), start_new_session=True)
    ckpts = wd / "checkpoints/quick/table1/resmlp"
    deadline = time.time() + 300
    while time.time() < deadline:  # one job done, the other checkpointed and still training
        done = [d for d in (first, second) if (d / "layerwise.csv").exists()]
        running = [d for d in (first, second) if d not in done and (ckpts / d.name / "last.pt").exists()]
        if done and running:
            break
        assert proc.poll() is None, (tmp_path / "snakemake.err").read_text()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: snakemake and its job, as a dead node would
    proc.wait()
    finished, killed = done[0], running[0]
    assert not (killed / "layerwise.csv").exists()
    before = {f.name: f.stat().st_mtime_ns for f in finished.iterdir()}
    assert snakemake(wd, "--unlock").returncode == 0  # a hard kill leaves Snakemake's lock behind
    r = snakemake(wd, *targets, "--cores", "1", "--config", "scale=quick")
    assert r.returncode == 0, r.stderr[-3000:]
    assert {f.name: f.stat().st_mtime_ns for f in finished.iterdir()} == before  # the finished run was kept
    assert "resuming from" in (wd / f"logs/quick/table1/resmlp/{killed.name}.log").read_text()
    ref = tmp_path / "ref"
    args = json.loads((killed / "run.json").read_text())["config"]
    cmd = [sys.executable, "-m", "lpa_core", "train", "--out", str(ref), "--ckpt-dir", str(tmp_path / "ref_ck")]
    for k, v in args.items():
        cmd += [f"--{k}", ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True, timeout=600)
    assert pd.read_csv(killed / "layerwise.csv").equals(pd.read_csv(ref / "layerwise.csv"))


def test_nested_config_override_arrives_typed(tmp_path):
    """`--config` with a nested mapping: Snakemake reads its values as text; they reach the schema and the jobs as
    numbers (config/README.md, the quick-scale seeds and epochs example)."""
    r = snakemake(workdir(tmp_path), "-n", "-p", "results/tables/quick/table1.csv", "--config", "scale=quick",
                  "scales={quick: {table1: {seeds: [0], train: {epochs: 3, lr: 0.02}}}}")
    assert r.returncode == 0, r.stderr[-2000:]
    cmds = [l for l in r.stdout.splitlines() if "lpa_core train" in l]
    assert cmds and all(" --seeds 0 " in c and " --epochs 3 " in c and " --lr 0.02 " in c for c in cmds), cmds[:1]
    assert all(" --eval_every 2 " in c for c in cmds)  # the keys not named keep their values (merged, not replaced)


def test_migrated_cached_runs_are_fresh_and_a_changed_recipe_is_named(tmp_path):
    """The committed quick runs, migrated (python -m lpa_core runs migrate), stand for what the workflow asks: a dry
    run schedules no training; a changed training key names each run it makes stale and schedules it."""
    wd = workdir(tmp_path)
    shutil.copytree(ROOT / "results/runs/quick", wd / "results/runs/quick")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    m = subprocess.run([sys.executable, "-m", "lpa_core", "runs", "migrate", "results/runs/quick"], cwd=wd, env=env,
                       capture_output=True, text=True, timeout=300)
    assert m.returncode == 0, m.stderr[-2000:]
    r = snakemake(wd, "-n", "--config", "scale=quick")
    assert r.returncode == 0, r.stderr[-2000:]
    assert not re.findall(r"^train\w*\s+\d+$", r.stdout, re.M) and " is stale" not in r.stderr and " is damaged" not in r.stderr, r.stderr[-2000:]
    q = wd / "results/runs/quick"  # one marker per run folder; a tune folder (tune.json, trials/, final/) is one
    folders = {p.parent.parent if (p.parent.parent / "tune.json").is_file() else p.parent for p in q.rglob("run.json")}
    assert {p.parent for p in q.rglob(".fresh")} == folders
    r = snakemake(wd, "-n", "--config", "scale=quick", "scales={quick: {table1: {train: {eval_every: 4}}}}")
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", r.stdout, re.M)}
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert jobs.get("train_surfaces") == len(cfg["table1"]["paradigms"]), jobs
    table1 = [line for line in r.stderr.splitlines() if "/table1/resmlp/" in line and "is stale: eval_every 2 -> 4" in line]
    assert len(table1) == len(cfg["table1"]["paradigms"])  # and the fair track's tune folders, built on table1's recipe
    assert r.stderr.count("is stale: eval_every 2 -> 4") == len(table1) + len(list(q.glob("fair/*/*/*/tune.json")))
