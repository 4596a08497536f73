# Per-rule threads and resources from config["resources"], shared by local runs and cluster submission
# (profiles/default, profiles/slurm; see profiles/README.md). Include after common.smk, before the rules.
#
#   config/config.yaml                              the rule
#   resources:                                      threads: rule_threads("train_surfaces")
#     train_surfaces:                               resources: **rule_resources("train_surfaces")
#       runtime: 60       # minutes, first attempt  shell: gpu_claim("train_surfaces") + "python -m lpa_core ..."
#       mem_mb: 2000
#       threads: 1
#       gpu: 1            # optional; GPUs per job (Slurm: --gpus)
#       gpu_model: a100   # optional; Slurm GPU type (--gpus=a100:1)
#
# runtime grows with each attempt (attempt k gets k x runtime), so a job that Slurm killed at its time limit
# comes back with more time when Snakemake retries it (`retries:` in the profile); the training resumes from its
# checkpoint. Any other key (slurm_partition, slurm_extra, constraint, qos, cpus_per_task, ...) is passed to
# Snakemake unchanged, so one rule can go to another partition than the default in profiles/slurm.


import os
import shlex

# the helper sits beside the local profile; resolved from this file's folder (a local checkout)
_GPU_CLAIM = os.path.normpath(
    os.path.join(workflow.current_basedir.get_path_or_uri(secret_free=True), "../../profiles/default/gpu_claim.sh")
)


def _rule_spec(name):
    return dict(config.get("resources", {}).get(name) or {})


def rule_threads(name):
    """Threads for the jobs of `name` (config resources.<name>.threads, default 1); Slurm: --cpus-per-task."""
    return int(_rule_spec(name).get("threads", 1))


def rule_gpus(name):
    """GPUs per job of `name`: resources.<name>.gpu (0: a CPU job), or 1 when only gpu_model is given."""
    spec = _rule_spec(name)
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
