"""Atomic result files and provenance: every results file can say what made it."""
import csv
import datetime
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


def git_commit():
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("-dirty" if dirty else "")


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
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "hardware": hardware(device),
        "versions": {"python": platform.python_version(), "torch": _version("torch"), "numpy": np.__version__},
        "date": now(),
    }


def _version(module):
    return sys.modules[module].__version__ if module in sys.modules else importlib.metadata.version(module)


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
