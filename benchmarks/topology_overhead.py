"""Cost of a learned residual topology (ANCRe) against cascade: step time and memory, side by side in one run, in
both wirings (lpa_core.topology: `ancre` = the paper's, the mix replaces each block's shortcut; `ancre_add` = the
authors' code's, the block keeps its shortcut and the mix is added after it).

    python benchmarks/topology_overhead.py                      # CPU: the vision models at batch 8, then the MLP
    python benchmarks/topology_overhead.py --device cuda --batch 128 --reps 20
    python benchmarks/topology_overhead.py --part mlp [--runs 35] [--depth 6] [--batches 10] [--paradigm simultaneous]

Vision part (--archs, default resnet18, vit12, vit24 at full size on 32 x 32 RGB inputs, 10 classes): one whole
training step per repeat (forward, cross-entropy, backward, the family's optimizer step: lpa_core.vision's SGD or
AdamW), the cascade and the ANCRe (ingoing) models of the same init, one per wiring of --wirings, interleaved
repeat by repeat so that drift of a shared machine hits them alike; the median over `--reps` repeats after 2 warm-up steps. Clock: on the CPU the
thread's CPU time (time.thread_time: one torch thread runs in the calling thread), less disturbed by other
processes than the wall clock; on CUDA the wall clock between synchronisations. Memory, two measures:
  saved_mib   activations kept for backward: the bytes of the distinct storages that autograd saves in one
              forward (torch.autograd.graph.saved_tensors_hooks), on every device. This is what a topology changes
              (the training step's other memory, weights, gradients and optimizer state, grows only by the
              L(L+1)/2 coefficients); tracemalloc does not see torch's allocations and the resident set is
              blurred by the allocator's caching, so on the CPU it is the honest number.
  peak_mib    CUDA only: torch.cuda.max_memory_allocated over one whole step (weights, gradients, optimizer state,
              activations, temporaries), the paper's Table 6 measure.
Ratios: ANCRe time / cascade time, ANCRe memory - cascade memory. MLP part (--part mlp): the residual MLP of
Table 1 under every topology, timed through the training core's own SurfaceTask and paradigm epochs (as before).
Results: results/benchmarks/topology_overhead.csv (+ .json provenance, lpa_core.io) for the vision part,
topology_overhead_mlp.csv (+ .json) for the MLP part.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lpa_core import io  # noqa: E402
from lpa_core.config import TrainConfig  # noqa: E402
from lpa_core.registry import PARADIGMS  # noqa: E402
from lpa_core.train import Context  # noqa: E402

VARIANTS = [("cascade", "ingoing"), ("ancre", "ingoing"), ("ancre", "outgoing"), ("ancre", "none"),
            ("all_fixed", "ingoing"), ("gains", "ingoing")]
WIRINGS = ("replace", "add")


def name(topo, wiring):
    """The workflow's variant name: cascade, ancre (replace), ancre_add (add)."""
    return topo if topo == "cascade" or wiring == "replace" else f"{topo}_add"


def mlp_part(a):
    """The residual MLP under every topology (Table 1's group by default), relative to cascade."""
    torch.set_num_threads(1)
    ctxs = {}
    for (topo, norm), wiring in [(v, w) for w in a.wirings.split(",") for v in VARIANTS if v[0] != "cascade" or w == "replace"]:
        cfg = TrainConfig(seeds=tuple(range(a.runs)), depth=a.depth, width=a.width, n_train=100 * a.batches, n_test=100,
                          paradigm=a.paradigm, topology=topo, normalisation=norm, wiring=wiring, device=a.device)
        ctxs[topo, norm, wiring] = Context(cfg)
        PARADIGMS[a.paradigm](ctxs[topo, norm, wiring], 0)  # warm-up
    times = {k: [] for k in ctxs}
    for _ in range(a.reps):
        for k, ctx in ctxs.items():
            steps = int(ctx.steps[0])
            if a.device != "cpu":
                torch.cuda.synchronize()
            clock = time.thread_time if a.device == "cpu" else time.perf_counter
            t = clock()
            PARADIGMS[a.paradigm](ctx, 0)
            if a.device != "cpu":
                torch.cuda.synchronize()
            times[k].append((clock() - t) / (int(ctx.steps[0]) - steps))
    base = statistics.median(times["cascade", "ingoing", "replace"])
    print(f"{a.paradigm}, {a.runs} runs x width {a.width} x depth {a.depth}, batch 100, {a.device} ({'thread CPU' if a.device == 'cpu' else 'wall'} time)")
    rows = []
    for (topo, norm, wiring), ts in times.items():
        med = statistics.median(ts)
        label = name(topo, wiring) + (f"/{norm}" if topo == "ancre" else "")
        print(f"  {label:20s} {1e3 * med:8.3f} ms/step  x{med / base:.2f}")
        rows.append([a.paradigm, a.runs, a.width, a.depth, name(topo, wiring), norm if topo == "ancre" else "", wiring,
                     io.hardware(a.device), a.reps, round(1e3 * med, 4), round(med / base, 4)])
    return rows


def saved_bytes(fn, params=()):
    """Bytes of the distinct storages autograd saves for backward while fn() runs, parameters left out."""
    seen, skip = {}, {p.untyped_storage().data_ptr() for p in params}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def vision_part(a):
    """cascade vs ANCRe per arch: median step time, saved activations, CUDA peak; rows for the CSV."""
    from lpa_core.vision import RECIPES, family, make_optimizer
    from lpa_core.registry import create_model

    dev, cuda = torch.device(a.device), a.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    clock = time.perf_counter if cuda else time.thread_time
    rows = []
    for arch in a.archs.split(","):
        x = torch.randn(a.batch, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (a.batch,), device=dev)
        setups = {}
        for topo, wiring in [("cascade", "replace")] + [("ancre", w) for w in a.wirings.split(",")]:
            m = create_model(arch, d_in=(3, 32, 32), d_out=10, topology=topo, wiring=wiring).to(dev).train()
            m.amp = cuda  # bf16 autocast on CUDA, as the vision task runs
            r = RECIPES[family(arch)]
            setups[name(topo, wiring)] = (m, make_optimizer(m, arch, r["lr"], r["weight_decay"]))

        def step(topo, measure=False):
            m, opt = setups[topo]
            opt.zero_grad(set_to_none=True)
            loss, saved = saved_bytes(lambda: torch.nn.functional.cross_entropy(m(x).float(), y), m.parameters()) if measure else (
                torch.nn.functional.cross_entropy(m(x).float(), y), 0)
            loss.backward()
            opt.step()
            return saved

        res = {t: {"times": []} for t in setups}
        for topo in setups:
            for _ in range(2):
                step(topo)  # warm-up: allocator, cuDNN autotune, optimizer state
            if cuda:
                sync()
                torch.cuda.reset_peak_memory_stats(dev)
            res[topo]["saved"] = step(topo, measure=True)
            if cuda:
                sync()
                res[topo]["peak"] = torch.cuda.max_memory_allocated(dev)
        for _ in range(a.reps):
            for topo in setups:
                sync()
                t = clock()
                step(topo)
                sync()
                res[topo]["times"].append(clock() - t)
        base = statistics.median(res["cascade"]["times"])
        n_blocks = setups["cascade"][0].depth
        for topo, r in res.items():
            med = statistics.median(r["times"])
            peak = r.get("peak")
            rows.append([arch, n_blocks, topo, io.hardware(a.device) + (" bf16" if cuda else " fp32"), a.batch, a.reps,
                         round(1e3 * med, 3), round(med / base, 4), round(r["saved"] / 2**20, 2),
                         round((r["saved"] - res["cascade"]["saved"]) / 2**20, 2),
                         "" if peak is None else round(peak / 2**20, 1),
                         "" if peak is None else round((peak - res["cascade"]["peak"]) / 2**20, 1)])
            print(" ".join(f"{str(v):>12}" for v in rows[-1][:3] + rows[-1][4:]), flush=True)
    return rows


MLP_HEAD = ["paradigm", "runs", "width", "depth", "topology", "normalisation", "wiring", "device", "reps", "ms_per_step",
            "time_vs_cascade"]
HEAD = ["arch", "n_blocks", "topology", "device", "batch", "reps", "ms_per_step", "time_vs_cascade", "saved_mib",
        "saved_mib_vs_cascade", "peak_mib", "peak_mib_vs_cascade"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["all", "vision", "mlp"], default="all")
    p.add_argument("--device", default="cpu")
    p.add_argument("--archs", default="resnet18,vit12,vit24", help="vision: comma-separated lpa_core.vision_models names")
    p.add_argument("--batch", type=int, default=8, help="vision: images per step")
    p.add_argument("--reps", type=int, default=5, help="timed repeats (vision: steps; MLP: epochs) per topology")
    p.add_argument("--out", default="results/benchmarks/topology_overhead.csv", help="vision part: CSV (+ .json)")
    p.add_argument("--runs", type=int, default=35, help="MLP: runs in the vectorised group")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--width", type=int, default=10)
    p.add_argument("--batches", type=int, default=10, help="MLP: batches of 100 per epoch")
    p.add_argument("--paradigm", default="simultaneous")
    p.add_argument("--wirings", default="replace,add", help="ANCRe wirings measured beside cascade (lpa_core.topology)")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.part in ("all", "vision"):
        print(" ".join(f"{h:>12}" for h in HEAD[:3] + HEAD[4:]))
        rows = vision_part(a)
        io.write_csv(a.out, HEAD, rows)
        io.write_json(Path(a.out).with_suffix(".json"), {**io.provenance(a.device), "args": vars(a), "torch_threads": 1})
        print(f"-> {a.out}")
    if a.part in ("all", "mlp"):
        out = Path(a.out).with_name(Path(a.out).stem + "_mlp.csv")
        io.write_csv(out, MLP_HEAD, mlp_part(a))
        io.write_json(out.with_suffix(".json"), {**io.provenance(a.device), "args": vars(a), "torch_threads": 1})
        print(f"-> {out}")


if __name__ == "__main__":
    main()
