"""Compiled kernels for the surfaces' residual MLP (lpa_core/kernels.c): the forward with its tape, the backward and
the Adam step, each for every run of a vectorised group in one call, and a whole training step (forward, MSE,
backward, Adam) of every run, one run after another, in one call (`train`: one run's tape at a time stays in the
core's cache, and the Python between the calls is gone).

The C source is built on first use with the machine's C compiler (`cc`, or $CC) into a cache folder
($LPA_KERNEL_CACHE, else ~/.cache/lpa-bench), one file per source, flags and CPU, written atomically so concurrent
jobs may race for it; then loaded with ctypes. LPA_KERNEL=torch in the environment selects the PyTorch fast path
instead (lpa_core.models.ResMLP.tape/backward, lpa_core.optim.RunAdam: the reference), which is also what runs on a
machine without a compiler (said once on stderr) and on any device but the CPU. `used()` names the path a job
took (run.json records it).

Numbers: a run's arithmetic does not depend on its group, so vectorised equals alone bit for bit, in float32 and
float64; inactive parameters are never written (tests/test_kernels.py). Against autograd the sums over the batch add
in another order: gradients agree to rounding (tests/test_core.py test_fast_*: within 1e-12 of the largest in
float64, 2e-5 in float32).
"""
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("kernels.c")
VL = 16  # kernels.c's lanes: the batch is padded to a multiple inside
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-std=gnu11", "-shared", "-fPIC")
# GCC's tuning for some CPUs (AMD Zen: -mtune=znver*) splits chains of multiply-adds of up to 256 bits into a multiply
# and an add, so a build's numbers would hang on the vector width and the CPU it was tuned for: every multiply-add is
# fused instead (tests/test_kernels.py test_the_vector_width_changes_no_number). Dropped for a compiler without it.
GCC_FLAGS = ("--param=avoid-fma-max-bits=0",)
DTYPES = {torch.float32: ("f32", ctypes.c_float), torch.float64: ("f64", ctypes.c_double)}
P, I, L = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
SIGNATURES = {  # argument types after the dtype's own scalars are filled in (S: the dtype's C scalar)
    "forward": [I, I, I, I, I, I, I, P, P, P, P, P, I, P, I, P, P, P, P],
    "backward": [I, I, I, I, I, I, I, P, P, P, P, P, P, P, P, I, P, P, P, P, P],
    "adam": [I, L, I, P, P, P, P, P, P, P, P, P, P, I, P, P, P, "S", "S", "S", "S", "S", "S", I],
    "train": [I, I, I, I, I, I, I, P, P, P, P, P, P, P, P, L, I, P, P, P, P, P, P, P, P, P, P, P,
              "S", "S", "S", "S", "S", "S", I, P, P, P, P],
}


def cache_dir():
    return Path(os.environ.get("LPA_KERNEL_CACHE") or Path.home() / ".cache" / "lpa-bench")


def cpu_id():
    """What -march=native compiles for: the machine and its CPU's model and feature flags."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags", "Features"))][:2]
    return platform.machine() + "\n" + "\n".join(lines)


def build(path, extra=()):
    """Compile kernels.c into `path` (atomic: a temporary file, then a rename); `extra`: more compiler flags."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise OSError("no C compiler (cc, gcc or $CC) on PATH")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        run = lambda flags: subprocess.run([cc, *flags, *extra, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True)  # noqa: E731
        if run(FLAGS + GCC_FLAGS).returncode:
            run(FLAGS).check_returncode()
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def library():
    """The loaded kernels (ctypes.CDLL), or None: LPA_KERNEL=torch (read at every call), or they cannot be built here."""
    return None if os.environ.get("LPA_KERNEL", "c") == "torch" else load()


@functools.cache
def load():
    """Build (once per source, flags and CPU) and load the kernels; None, said once on stderr, where they cannot be built."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS + GCC_FLAGS).encode() + cpu_id().encode()).hexdigest()[:16]
    path = cache_dir() / f"kernels-{key}.so"
    try:
        if not path.exists():
            build(path)
        return open_library(path)
    except (OSError, subprocess.CalledProcessError) as e:
        why = [ln for ln in (getattr(e, "stderr", None) or "").splitlines() if "error" in ln][:1] or [str(e)]
        print(f"lpa_core.kernels: cannot build {SOURCE} ({why[0].strip()}); the PyTorch fast path runs instead", file=sys.stderr)
        return None


def open_library(path):
    """A built kernels file loaded, its functions typed."""
    lib = ctypes.CDLL(str(path))
    for name, sig in SIGNATURES.items():
        for suffix, scalar in DTYPES.values():
            f = getattr(lib, f"{name}_{suffix}")
            f.argtypes, f.restype = [scalar if a == "S" else a for a in sig], None
    return lib


def available(t):
    """Whether the kernels run on tensors like t (a CPU tensor of float32 or float64)."""
    return t.device.type == "cpu" and t.dtype in DTYPES and library() is not None


def used(t):
    """The path a surface job's fast path takes on tensors like t: 'c' (these kernels) or 'torch'."""
    return "c" if available(t) else "torch"


def fn(name, dtype):
    return getattr(library(), f"{name}_{DTYPES[dtype][0]}")


_POINTERS = {}


def pointers(tensors):
    """(addresses of run 0's block, run strides) of [R, ...] tensors, each contiguous within a run, as int64 tensors;
    cached by addresses and strides both (memory freed by one model and reused by the next can come back at the
    same address with another run stride: a one-run model's size-1 run axis has any stride)."""
    key = tuple([t.data_ptr() for t in tensors] + [t.stride(0) for t in tensors])
    got = _POINTERS.get(key)
    if got is None:
        if not all(t[0].is_contiguous() for t in tensors):
            raise ValueError("kernels: a parameter or gradient is not contiguous within its run")
        if len(_POINTERS) > 256:
            _POINTERS.clear()
        n = len(tensors)
        got = _POINTERS[key] = (torch.tensor(key[:n], dtype=torch.int64), torch.tensor(key[n:], dtype=torch.int64))
    return got


class Workspace:
    """The buffers a model's training forwards reuse for their tapes (states and activations: megabytes a step that
    would otherwise go back to the system and fault in again). One tape at a time: a later forward takes the buffers
    over, and `backward` on the earlier tape then refuses."""

    def __init__(self):
        self.buf, self.gen = None, 0

    def take(self, n, like):
        """A flat buffer of n elements like `like`, and the generation that now owns it."""
        if self.buf is None or self.buf.numel() < n or self.buf.dtype != like.dtype or self.buf.device != like.device:
            self.buf = like.new_empty(n)
        self.gen += 1
        return self.buf[:n], self.gen


class Tape:
    """What `forward` keeps for `backward`: the input, x_0..x_depth (H), the hidden activations (A), the blocks'
    keep modes and gates, the depth, the exit depths, and the workspace generation that owns H and A."""
    __slots__ = ("x", "H", "A", "mode", "gate", "depth", "exits", "ws", "gen")

    def __init__(self, x, H, A, mode, gate, depth, exits, ws, gen):
        self.x, self.H, self.A, self.mode, self.gate, self.depth, self.exits, self.ws, self.gen = x, H, A, mode, gate, depth, exits, ws, gen


@functools.lru_cache(maxsize=64)
def constant(values, dtype):
    """A small constant tensor (cached: keep modes, layer flags)."""
    return torch.tensor(values, dtype=dtype)


def keep_modes(keeps, R, B):
    """(mode [depth] int32, gate [depth, R, B] uint8) from per-block keep masks as ResidualStack.kept gives them:
    None (kept: 0), False (dropped: 1), or a float mask [B], [R, B] or [R, 1] (gated: 2). No gated block: a
    one-element gate, never read."""
    mode = constant(tuple(0 if k is None else 1 if k is False else 2 for k in keeps), torch.int32)
    if all(k is None or k is False for k in keeps):
        return mode, constant((1,), torch.uint8)
    gate = torch.ones(len(keeps), R, B, dtype=torch.uint8)
    for j, k in enumerate(keeps):
        if torch.is_tensor(k):
            gate[j] = (k.view(k.shape[0] if k.dim() == 2 else 1, -1) > 0).expand(R, B)
    return mode, gate


def forward(params, x, keeps, exits, workspace=None):
    """(predictions [n_exits, R, d_out, B], Tape or None) of the residual MLP whose parameters are `params` (weight
    and bias of the stem, of fc1 and fc2 of each block, of the head: 4 L + 4 tensors [R, out, in], [R, out, 1]) on
    input x [R, d_in, B], through the first len(keeps) blocks (keeps: one keep mask per block) and the shared head
    at each of the increasing depths `exits` (the last at most len(keeps)). With a Workspace, the tape for
    `backward` (in its buffers); without, no tape (evaluation: one run's states at a time)."""
    x = x.contiguous()
    R, din, B = x.shape
    W, dout, depth, n_blocks = params[0].shape[1], params[-1].shape[1], len(keeps), len(params) // 4 - 1
    ptr, rs = pointers(params)
    mode, gate = keep_modes(keeps, R, B)
    ex = constant(tuple(exits), torch.int32)
    Bp = -(-B // VL) * VL
    if workspace is None:
        H, A, gen = x.new_empty(W, Bp), x.new_empty(W, Bp), None
    else:
        nH, nA = (depth + 1) * R * W * Bp, max(depth, 1) * R * W * Bp
        buf, gen = workspace.take(nH + nA, x)
        H, A = buf[:nH].view(depth + 1, R, W, Bp), buf[nH:].view(max(depth, 1), R, W, Bp)
    pred, scratch = x.new_empty(len(exits), R, dout, B), x.new_empty(din + dout + W, Bp)
    fn("forward", x.dtype)(R, din, W, dout, n_blocks, depth, B, x.data_ptr(), ptr.data_ptr(), rs.data_ptr(), mode.data_ptr(),
                           gate.data_ptr(), len(exits), ex.data_ptr(), int(workspace is not None), H.data_ptr(), A.data_ptr(),
                           pred.data_ptr(), scratch.data_ptr())
    return pred, None if workspace is None else Tape(x, H, A, mode, gate, depth, ex, workspace, gen)


def backward(params, tape, g, want):
    """Gradients of sum(g * predictions) (g [n_exits, R, d_out, B]) into the .grad of the layers with want[i] (stem,
    blocks 1..L, head; a missing .grad is made); the others get none, though the gradient flows through them."""
    if tape.ws.gen != tape.gen:
        raise RuntimeError("backward: a later forward has reused this tape's buffers (take each step before the next forward)")
    grads = [p.grad for p in params]
    if any(gr is None for gr in grads):
        layer = lambda i: range(2) if i == 0 else range(len(params) - 2, len(params)) if i == len(want) - 1 else range(4 * i - 2, 4 * i + 2)  # noqa: E731
        for t in (t for i, w in enumerate(want) if w for t in layer(i)):
            if grads[t] is None:
                params[t].grad = grads[t] = torch.zeros_like(params[t])
        grads = [p if gr is None else gr for p, gr in zip(params, grads)]  # a layer not wanted is never written
    ptr, rs = pointers(params)
    gptr, grs = pointers(grads)
    R, din, B = tape.x.shape
    W, dout = params[0].shape[1], params[-1].shape[1]
    g, want = g.contiguous(), constant(tuple(want), torch.uint8)
    scratch = tape.x.new_empty(din + dout + 3 * W + dout * (W + 1), -(-B // VL) * VL)
    fn("backward", g.dtype)(R, din, W, dout, len(params) // 4 - 1, tape.depth, B, tape.x.data_ptr(), ptr.data_ptr(),
                            rs.data_ptr(), gptr.data_ptr(), grs.data_ptr(), want.data_ptr(), tape.mode.data_ptr(),
                            tape.gate.data_ptr(), len(tape.exits), tape.exits.data_ptr(), tape.H.data_ptr(),
                            tape.A.data_ptr(), g.data_ptr(), scratch.data_ptr())


def adam(opt, spans, runs, keep, lr, decay):
    """RunAdam.step's update through adam_<dtype>: spans [slice], runs [R] bool or None, keep [R, G] bool or None,
    lr and decay per run (tensors [R] in the buffers' dtype)."""
    b1, b2 = opt.betas
    R, Pn = opt.flat.shape
    lo, hi = constant(tuple(s.start for s in spans), torch.int64), constant(tuple(s.stop for s in spans), torch.int64)
    run = None if runs is None else runs.to(torch.uint8).contiguous()
    kp = None if keep is None else keep.to(torch.uint8).contiguous()
    coupled = bool(opt.weight_decay) and not opt.decoupled
    fn("adam", opt.flat.dtype)(
        R, Pn, len(spans), lo.data_ptr(), hi.data_ptr(), opt.flat.data_ptr(), opt.grad.data_ptr(), opt.m.data_ptr(),
        opt.v.data_ptr(), opt.b1t.data_ptr(), opt.b2t.data_ptr(), None if run is None else run.data_ptr(),
        None if kp is None else kp.data_ptr(), 0 if kp is None else kp.shape[1], opt.group_of.data_ptr(),
        lr.data_ptr(), decay.data_ptr(), b1, b2, 1 - b1, 1 - b2, opt.eps, opt.weight_decay, int(coupled))


def train(params, x, y, depth, want, opt, spans, active):
    """One whole training step of every active run (active [R] bool) in one call (kernels.c train): each run's
    forward of blocks 1..depth (all kept), its MSE against y [R, d_out, B] and, where that is finite, the backward
    into the layers with want[i] (stem, blocks 1..L, head) and RunAdam's step on `spans`: the numbers of forward,
    backward and adam called apart, bit for bit, one run's tape at a time. Returns (loss [R] (the MSE of each
    active run, 0 for the others), bad [R] bool: the active runs whose loss was not finite and which did not step)."""
    x, y = x.contiguous(), y.contiguous()
    R, din, B = x.shape
    W, dout, n_blocks = params[0].shape[1], params[-1].shape[1], len(params) // 4 - 1
    ptr, rs = pointers(params)
    gptr, grs = pointers([p.grad for p in params])
    b1, b2 = opt.betas
    lr, decay = opt.per_run(*opt.rates())
    lo, hi = constant(tuple(s.start for s in spans), torch.int64), constant(tuple(s.stop for s in spans), torch.int64)
    mode = constant((0,) * depth, torch.int32) if depth else constant((0,), torch.int32)
    Bp = -(-B // VL) * VL
    rows = (2 * depth + 1 + (depth == 0)) * W + din + dout + W + din + dout + 3 * W + dout * (W + 1)
    scratch = x.new_empty(rows * Bp + 2 * dout * B)
    loss, bad = x.new_zeros(R), torch.zeros(R, dtype=torch.uint8)
    act = active.to(torch.uint8).contiguous()
    coupled = bool(opt.weight_decay) and not opt.decoupled
    fn("train", x.dtype)(R, din, W, dout, n_blocks, depth, B, x.data_ptr(), y.data_ptr(), ptr.data_ptr(), rs.data_ptr(),
                         gptr.data_ptr(), grs.data_ptr(), constant(tuple(want), torch.uint8).data_ptr(), mode.data_ptr(),
                         opt.flat.shape[1], len(spans), lo.data_ptr(), hi.data_ptr(), opt.flat.data_ptr(), opt.grad.data_ptr(),
                         opt.m.data_ptr(), opt.v.data_ptr(), opt.b1t.data_ptr(), opt.b2t.data_ptr(), opt.group_of.data_ptr(),
                         lr.data_ptr(), decay.data_ptr(), b1, b2, 1 - b1, 1 - b2, opt.eps, opt.weight_decay, int(coupled),
                         act.data_ptr(), loss.data_ptr(), bad.data_ptr(), scratch.data_ptr())
    opt.n_steps += 1
    return loss, bad.bool()
