"""Atomic result files and provenance: every results file can say what made it."""
import csv
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np


def _atomic(path, write):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_csv(path, header, rows):
    def w(tmp):
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(header)
            out.writerows(rows)
    _atomic(path, w)


def write_json(path, obj):
    _atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1, default=str) + "\n"))


def write_npz(path, **arrays):
    def w(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    _atomic(path, w)


def save_torch(path, obj):
    import torch

    _atomic(path, lambda tmp: torch.save(obj, tmp))


# What counts as code for provenance: a run is '<commit>-dirty' only when these differ from the commit, not when
# the run (or an earlier one) rewrote tracked result files (results/, figures/), docs or the config (the resolved
# config is in run.json itself)
CODE_PATHS = ("lpa_core", "workflow", "Snakefile", "pyproject.toml", "environment.yml")


def git_commit(root=None):
    """('<commit>' or '<commit>-dirty' when the code (CODE_PATHS) differs from it, sha256 (16 hex digits) of that
    `git diff HEAD` or None), of the checkout `root` (default: the one holding lpa_core)."""
    sha, diff = _git_state(Path(root or Path(__file__).resolve().parent.parent))
    return sha + ("-dirty" if diff else ""), hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None


def _git_state(root):
    git = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=10).stdout
    try:
        sha = git("rev-parse", "HEAD").strip()
        paths = [p for p in CODE_PATHS if (root / p).exists()]
        diff = git("diff", "HEAD", "--", *paths) if sha else ""
    except (OSError, subprocess.SubprocessError):
        return "unknown", ""
    return sha or "unknown", diff


def hardware(device="cpu"):
    torch = sys.modules.get("torch")  # loaded by a training job; aggregation jobs never import it (5 s saved per job)
    if torch and str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} ({os.cpu_count()} cores" + (f", {torch.get_num_threads()} torch threads)" if torch else ")")


def provenance(device="cpu"):
    return {
        "command": " ".join(sys.argv),
        **dict(zip(("git_commit", "code_diff"), git_commit())),  # code_diff: hash of a -dirty commit's code change
        "host": socket.gethostname(),
        "hardware": hardware(device),
        "versions": {"python": platform.python_version(), "torch": _version("torch"), "numpy": np.__version__},
        "date": now(),
    }


def _version(module):
    return sys.modules[module].__version__ if module in sys.modules else importlib.metadata.version(module)


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
