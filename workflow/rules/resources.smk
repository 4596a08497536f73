# Per-rule threads and resources from config["resources"], shared by local runs and cluster submission
# (profiles/default, profiles/slurm; see profiles/README.md). Include after common.smk, before the rules.
#
#   config/config.yaml                              the rule
#   resources:                                      threads: rule_threads("train_surfaces")
#     train_surfaces:                               resources: **rule_resources("train_surfaces")
#       runtime: 60       # minutes, first attempt  shell: gpu_claim("train_surfaces") + "python -m lpa_core ..."
#       mem_mb: 2000
#       threads: 1
#       gpu: 1            # optional; GPUs per job (Slurm: --gpus); auto: 1 on a machine with GPUs or under a
#                         # cluster executor (profiles/slurm), else 0 (a CPU job)
#       gpu_model: a100   # optional; Slurm GPU type (--gpus=a100:1)
#
# runtime grows with each attempt (attempt k gets k x runtime), so a job that Slurm killed at its time limit
# comes back with more time when Snakemake retries it (`retries:` in the profile); the training resumes from its
# checkpoint. Any other key (slurm_partition, slurm_extra, constraint, qos, cpus_per_task, ...) is passed to
# Snakemake unchanged, so one rule can go to another partition than the default in profiles/slurm.


import os
import shlex
import shutil
import subprocess
import sys

import yaml

# the helper sits beside the local profile; resolved from this file's folder (a local checkout)
_GPU_CLAIM = os.path.normpath(
    os.path.join(workflow.current_basedir.get_path_or_uri(secret_free=True), "../../profiles/default/gpu_claim.sh")
)


def _rule_spec(name):
    return dict(config.get("resources", {}).get(name) or {})


def rule_threads(name):
    """Threads for the jobs of `name` (config resources.<name>.threads, default 1); Slurm: --cpus-per-task."""
    return int(_rule_spec(name).get("threads", 1))


def machine_gpus(env=os.environ):
    """GPUs this machine offers: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists (0 without one); the
    same count profiles/default caps concurrent GPU jobs at and gpu_claim.sh hands out."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def cluster_executor(argv=None, env=os.environ):
    """The executor of a cluster run (e.g. 'slurm': --executor/-e, or the `executor:` of the --profile /
    SNAKEMAKE_PROFILE in use), else None (a local run)."""
    argv = sys.argv[1:] if argv is None else argv
    named, profile = None, env.get("SNAKEMAKE_PROFILE")
    for i, a in enumerate(argv):
        for flag, slot in (("--executor", "e"), ("-e", "e"), ("--profile", "p")):
            val = a.split("=", 1)[1] if a.startswith(f"{flag}=") else argv[i + 1] if a == flag and i + 1 < len(argv) else None
            if val and slot == "e":
                named = val
            elif val:
                profile = val
    if not named and profile:
        path = profile if profile.endswith((".yaml", ".yml")) else os.path.join(profile, "config.yaml")
        try:
            named = (yaml.safe_load(open(path)) or {}).get("executor")
        except (OSError, yaml.YAMLError):
            named = None
    return None if named in (None, "local", "dryrun", "touch") else named


def rule_gpus(name):
    """GPUs per job of `name`: resources.<name>.gpu (0: a CPU job; auto: 1 where there are GPUs, that is on a
    machine that has one or under a cluster executor, else 0), or 1 when only gpu_model is given."""
    spec = _rule_spec(name)
    if spec.get("gpu") == "auto":
        return 1 if machine_gpus() > 0 or cluster_executor() else 0
    if spec.get("gpu") is not None:
        return int(spec["gpu"])
    return 1 if spec.get("gpu_model") else 0


def rule_resources(name, **defaults):
    """Snakemake resources of `name`, for `resources: **rule_resources(name)`; `defaults` (e.g. runtime=10)
    stand in for keys that config resources.<name> leaves out."""
    spec = {**defaults, **_rule_spec(name)}
    spec.pop("threads", None)
    base = spec.pop("runtime", None)
    gpus = rule_gpus(name)
    spec.pop("gpu", None)
    res = {k: v for k, v in spec.items() if v is not None and v != ""}
    if base:
        res["runtime"] = lambda wildcards, attempt: int(base) * attempt
    if gpus:
        res["gpu"] = gpus  # Snakemake's standard GPU resource: slurm executor --gpus, local limit --resources gpu=N
    else:
        res.pop("gpu_model", None)
    return res


def gpu_claim(name):
    """Shell prefix for `name`: locally, give the job its own GPU(s) via CUDA_VISIBLE_DEVICES
    (profiles/default/gpu_claim.sh); empty for a CPU rule; a no-op inside a Slurm job."""
    gpus = rule_gpus(name)
    if not gpus:
        return ""
    return f". {shlex.quote(_GPU_CLAIM)} {gpus} && "


def announce_plan(jobs, scale, log=print):
    """Before the first job of a paper-scale run that will train on CPUs (no GPU here) or on a cluster: what is
    about to start and its estimated cost (lpa_core.cost), once. `jobs`: the jobs to run (rule name, shell command)."""
    where = cluster_executor()
    if scale != "paper" or (not where and machine_gpus() > 0):
        return
    train = [(rule, cmd) for rule, cmd in jobs if rule.startswith("train")]
    if not train:
        return
    counts = ", ".join(f"{n} {r}" for r, n in sorted({r: sum(1 for q, _ in train if q == r) for r, _ in train}.items()))
    log(f"lpa-bench: paper scale, {len(train)} training jobs ({counts}) "
        + (f"on the {where} cluster, one GPU per vision and language-model job" if where else
           "on this machine's CPUs: it has no GPU (the paper-scale grids are meant for GPUs; Ctrl-C now to stop)"))
    try:
        from lpa_core import cost

        log(cost.render(cost.estimate(cost.parse_commands("\n".join(cmd for _, cmd in train))), "h200"))
    except Exception as e:  # the estimate is advice: it never stops the run
        log(f"lpa-bench: no cost estimate ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


onstart:
    if not os.environ.get("SLURM_JOB_ID"):
        announce_plan([(j.rule.name, str(j.shellcmd or "")) for j in workflow.dag.needrun_jobs()], config.get("scale"),
                      log=lambda msg: print(msg, file=sys.stderr, flush=True))
