"""The language-model track (LPA appendix I / second version Sec 5.3, ANCRé Sec 5.1): a decoder-only transformer
from `transformers` (Llama, Qwen2) in the residual-stack interface, trained on text (lpa_core.text) under any
paradigm and residual topology through the one loop of lpa_core.train.

Model (LMStack, a BlockStack): the library's own modules, initialised by the library (`post_init`: normal(0,
initializer_range) weights, unit RMSNorm gains) under the run's seed, or loaded from a local `save_pretrained`
directory (arch = its path: the second version's Qwen2-0.5B fine-tuning setting).
  stem   token embedding; it also computes, once per forward, what every decoder layer shares (rotary cos/sin,
         position ids, the causal mask(s) the library builds) and leaves them in `stem.shared`
  blocks the decoder layers, each wrapped to map h -> h with the stem's shared inputs (DecoderBlock)
  head   the final RMSNorm + lm_head, shared by every depth (logits at depth k = lm_head(norm(x_k)))
At full depth under cascade, forward(ids) equals the library's CausalLM logits (tested); with tied embeddings
(Qwen2's small models) the embedding is one parameter of stem and head, listed once by `params`.

Named sizes (LM_ARCHS): lm_tiny / qwen2_tiny (quick, CPU), llama_60m / llama_130m / llama_350m (GaLore's configs,
which ANCRé's Table 7 trains: 8 / 12 / 24 layers; vocabulary = the tokenizer's), qwen2_small (Qwen2-0.5B's shape,
24 layers, from scratch).

Recipe (RECIPE; ANCRé Table 7 follows GaLore's torchrun_main.py: Adam(W) betas (0.9, 0.999), weight decay 0, no
gradient clipping, linear warm-up over 10% of the steps, cosine to 10% of the peak lr, sequences of 256, batch 512,
lr 5e-3 (60M) / 1e-3 (130M, 350M)). An LM epoch is cfg.epoch_batches batches of random windows (or one pass over
the training split when 0). The learning rate moves every batch as GaLore's scheduler does every step
(galore_lr: linear warm-up from 0 over warmup_epochs x batches, then cosine to final_lr_frac over the rest), so
Table 7's schedule is epochs x epoch_batches steps with warmup_epochs = epochs / 10. LPA's epoch is Algorithm 1's:
(L+1) x epoch_batches steps; its schedule counts batches (the L+1 steps of one batch share a rate), and a second
pass within an epoch (Algorithm 1's full-depth pass, Adaptive LPA's depth pass) keeps the epoch's last rate.

Outputs, beside the loop's run.json and coeffs.csv (any topology):
  layerwise.csv  validation perplexity, loss (nats/token) and next-token accuracy (%) at every depth 1..L
  history.csv    per evaluated epoch: validation loss, perplexity and accuracy at full depth, and (cfg.val_frac > 0)
                 the same on the development split held out of the training tokens (dev_*, lpa_core.text)
  summary.csv    status, steps, tokens, effective depth, parameters in all and at the effective depth
  pruned.csv     layerdrop runs only: validation perplexity, loss, accuracy of LayerDrop's pruned sub-networks
  samples.txt    greedy and sampled continuations of fixed prompts at depths L/4, L/2, 3L/4, L (Table 5's
                 quarter points) through the shared head
"""
import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lpa_core import io
from lpa_core._torchvision import import_transformers
from lpa_core.cost import lm_layer_flops
from lpa_core.task import OneRunTask
from lpa_core.models import BlockStack
from lpa_core.registry import create_model, is_pretrained
from lpa_core.surfaces import HISTORY, KEYS, SUMMARY
from lpa_core.text import load_text

RECIPE = dict(optimizer="AdamW (0.9, 0.999)", lr=1e-3, weight_decay=0.0, warmup_frac=0.1, final_lr_frac=0.1,
              seq_len=256, batch_size=512)
LAYERWISE = KEYS + ["depth", "metric", "value", "status"]
LSUMMARY = SUMMARY + ["params_effective", "tokens"]
PROMPTS = ("The", "A list is", "The import statement", "Exceptions are")  # fixed prompts of samples.txt
_DATA = {}  # loaded text, kept for a task re-made in the same process


# --- model --------------------------------------------------------------------------------------------------------

class Shared:
    """What every decoder layer of one forward reads (a plain object: not a module, so it owns no parameters)."""
    rope = pos = masks = None


class LMStem(nn.Module):
    def __init__(self, embed, rotary, config):
        super().__init__()
        self.embed_tokens, self.rotary_emb, self.config, self.shared = embed, rotary, config, Shared()

    def forward(self, ids):
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        h = self.embed_tokens(ids)
        pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        kw = dict(config=self.config, inputs_embeds=h, attention_mask=None, past_key_values=None, position_ids=pos)
        masks = {"full_attention": create_causal_mask(**kw)}
        if "sliding_attention" in (getattr(self.config, "layer_types", None) or []):
            masks["sliding_attention"] = create_sliding_window_causal_mask(**kw)
        s = self.shared
        s.pos, s.masks, s.rope = pos, masks, self.rotary_emb(h, pos)
        return h


class DecoderBlock(nn.Module):
    """A library decoder layer as a block h -> h (its own residuals inside), reading the stem's shared inputs."""

    def __init__(self, layer, shared, kind="full_attention"):
        super().__init__()
        self.layer, self.shared, self.kind = layer, shared, kind

    def forward(self, h):
        s = self.shared
        return self.layer(h, attention_mask=s.masks[self.kind], position_embeddings=s.rope, position_ids=s.pos)


class LMHead(nn.Module):
    def __init__(self, norm, lm_head):
        super().__init__()
        self.norm, self.lm_head = norm, lm_head

    def pre_logits(self, h):
        return self.norm(h)

    def forward(self, h):
        return self.lm_head(self.norm(h))


class LMStack(BlockStack):
    """A transformers CausalLM (`lm`) taken apart: embedding stem, decoder-layer blocks, shared norm + lm_head.
    Inputs token ids [B, T], logits [B, T, V]. With `amp` (the task sets it: CUDA, or precision bf16 on any device) forwards run under bf16 autocast."""

    def __init__(self, lm, topology="cascade", tau=0.01, normalisation="ingoing", wiring="add"):
        super().__init__()
        base, cfg = lm.model, lm.config
        self.config = cfg
        self.stem = LMStem(base.embed_tokens, base.rotary_emb, cfg)
        kinds = getattr(cfg, "layer_types", None) or ["full_attention"] * len(base.layers)
        self.blocks = nn.ModuleList(DecoderBlock(layer, self.stem.shared, k) for layer, k in zip(base.layers, kinds))
        self.head = LMHead(base.norm, lm.lm_head)
        self.connect(topology, tau=tau, normalisation=normalisation, wiring=wiring)

    def params(self, depth=None, first=0):
        """As ResidualStack.params, each parameter once (a tied embedding belongs to stem and head)."""
        return list({id(p): p for p in super().params(depth, first)}.values())


LM_ARCHS = {
    # name: (family, transformers config keys); vocab_size comes from the tokenizer
    "lm_tiny": ("llama", dict(hidden_size=64, intermediate_size=176, num_hidden_layers=4, num_attention_heads=4)),
    "qwen2_tiny": ("qwen2", dict(hidden_size=64, intermediate_size=176, num_hidden_layers=4, num_attention_heads=4,
                                 num_key_value_heads=2, tie_word_embeddings=True)),
    # GaLore configs/llama_{60m,130m,350m}.json (ANCRé Table 7's models)
    "llama_60m": ("llama", dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8)),
    "llama_130m": ("llama", dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12)),
    "llama_350m": ("llama", dict(hidden_size=1024, intermediate_size=2736, num_hidden_layers=24, num_attention_heads=16)),
    # Qwen2-0.5B's shape (the second version's model), from scratch
    "qwen2_small": ("qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                                  num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1e6)),
}


def lm_config(arch, vocab_size, max_len=2048):
    """The transformers config of a named size (Llama: rms_norm_eps 1e-6 as GaLore's; untied head)."""
    if arch not in LM_ARCHS:
        raise ValueError(f"arch: unknown LM size '{arch}' (valid: {', '.join(LM_ARCHS)})")
    transformers = import_transformers()
    family, kw = LM_ARCHS[arch]
    if family == "llama":
        return transformers.LlamaConfig(vocab_size=vocab_size, max_position_embeddings=max_len, rms_norm_eps=1e-6,
                                        tie_word_embeddings=False, **kw)
    return transformers.Qwen2Config(vocab_size=vocab_size, max_position_embeddings=max_len, **kw)


def named(arch, *, seeds, d_in, d_out, **keys):
    """LMStack of a named size from scratch (the library's init under torch's RNG: create_model seeds it); d_in =
    d_out = the vocabulary size. keys: topology, tau, normalisation, wiring."""
    if d_in != d_out:
        raise ValueError(f"d_in, d_out: a language model reads and predicts one vocabulary, got {d_in} and {d_out}")
    return LMStack(import_transformers().AutoModelForCausalLM.from_config(lm_config(arch, d_out)), **keys)


def pretrained(path, *, seeds, d_in, d_out, **keys):
    """LMStack of a local save_pretrained directory (its weights, fp32; its vocabulary: d_in and d_out unused)."""
    if not (Path(path) / "config.json").is_file():
        raise ValueError(f"arch: '{path}' is not a transformers model directory (no config.json)")
    return LMStack(import_transformers().AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), **keys)


LM_MODELS = {name: functools.partial(named, name) for name in LM_ARCHS}  # the builders (lpa_core.registry.create_model)


# --- task ---------------------------------------------------------------------------------------------------------

def make_optimizer(model, lr, weight_decay, shortcut_decay=False):
    """AdamW; weight decay on matrices only (none on norms, biases, topology logits: nanoGPT's rule; the logits
    too with shortcut_decay, as the authors' one parameter group)."""
    decay, plain = [], []
    for name, p in model.named_parameters():  # each parameter once (a tied embedding too)
        shortcut = name.endswith("shortcut")
        (decay if (p.ndim >= 2 and not shortcut) or (shortcut and shortcut_decay) else plain).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.999))


def galore_lr(base, step, total, warmup, final_frac):
    """The rate of schedule step `step` (0-based) of `total`, as GaLore's torchrun_main.py (training_utils,
    cosine scheduler, one cycle, stepped after every update): base * step / warmup during the warm-up (0 at the
    first step), then cosine from base to base * final_frac."""
    if step < warmup:
        return base * step / max(1, warmup)
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def quarter_depths(L):
    """Depths L/4, L/2, 3L/4, L (rounded up, distinct): Table 5's 12/24/36/48 of 48 layers."""
    return sorted({max(1, math.ceil(L * q / 4)) for q in (1, 2, 3, 4)})


class LMTask(OneRunTask):
    """One run of a language model: what a paradigm sees (batches, loss, loss_at, step) and what the loop needs
    (lpa_core.train). Per-run tensors have shape [1]."""

    def __init__(self, cfg):
        self.init_run(cfg)
        tokenizer = cfg.tokenizer
        if tokenizer == "auto":
            tokenizer = cfg.arch if is_pretrained(cfg.arch) else "bpe"
        key = (self.dataset, tokenizer, cfg.vocab_size, cfg.seq_len, cfg.data_dir, cfg.device, cfg.val_frac)
        if key not in _DATA:
            _DATA.clear()
            _DATA[key] = load_text(self.dataset, tokenizer, cfg.vocab_size, cfg.seq_len, cfg.data_dir, cfg.device, cfg.val_frac)
        self.data = _DATA[key]
        vocab = self.data.tok.get_vocab_size()
        model = create_model(cfg.arch, seeds=[self.seed], d_in=vocab, d_out=vocab, topology=cfg.topology, tau=cfg.tau,
                             normalisation=cfg.normalisation, wiring=cfg.wiring)
        if self.data.tok.get_vocab_size() > model.config.vocab_size:
            raise ValueError(f"tokenizer: {self.data.tok.get_vocab_size()} tokens, more than the model's vocabulary "
                             f"({model.config.vocab_size})")
        self.model = model.to(self.device)
        self.model.amp = self.amp
        self.opt = make_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.shortcut_decay == "same")
        self.lr = cfg.lr
        self.gen = torch.Generator().manual_seed(2_000_003 + self.seed)  # window positions and order
        self.model.layer_flops = lm_layer_flops(self.model, cfg.seq_len)  # per sequence of seq_len tokens
        self.counters()
        self._drawn = [None, 0]  # (epoch, batches drawn in it): the per-step schedule's position
        self.n_params = sum(p.numel() for p in self.model.parameters())
        from importlib.metadata import PackageNotFoundError, version  # (importing datasets itself costs seconds)

        self.versions = {}
        for k in ("transformers", "tokenizers", "datasets"):  # datasets is needed only for hf: and file corpora
            try:
                self.versions[k] = version(k)
            except PackageNotFoundError:
                pass

    # --- what a paradigm uses -----------------------------------------------------------------------------------

    @property
    def n_batches(self):
        """Batches per epoch (a pass: at most this many, depending on the epoch's random offset)."""
        c = self.cfg
        return c.epoch_batches or (len(self.data.train) - 1) // c.seq_len // c.batch_size

    def batches(self):
        """One epoch of next-token batches (x, y) [B, T]; the model in train mode."""
        self.model.train()
        c, n = self.cfg, self.n_batches
        for batch in self.data.train_batches(c.batch_size, c.seq_len, self.gen, c.epoch_batches):
            epoch = getattr(self, "epoch", None)  # set by the loop (lpa_core.train); absent: the rate stays
            if epoch is not None:
                if self._drawn[0] != epoch:
                    self._drawn = [epoch, 0]
                self.set_lr(galore_lr(c.lr, epoch * n + min(self._drawn[1], n - 1), c.epochs * n,
                                      round(c.warmup_epochs * n), c.final_lr_frac))
                self._drawn[1] += 1
            yield batch

    def _ce(self, logits, y):
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())

    def loss_at(self, h, y):
        """Next-token cross-entropy [1] of the shared head on representation h [B, T, d]."""
        self.model.count(self.model.depth + 1, h)
        with self.model.autocast():
            logits = self.model.head(h)
        return self._ce(logits, y).reshape(1)

    def loss(self, x, y, depth=None, metric=False):
        """Cross-entropy [1] at `depth` (None = full); metric=True adds next-token accuracy [1] (higher is better)."""
        logits = self.model(x, depth)
        ce = self._ce(logits, y).reshape(1)
        if not metric:
            return ce
        return ce, (logits.detach().argmax(-1) == y).float().mean().reshape(1)

    # --- what the loop uses -------------------------------------------------------------------------------------

    def describe(self):
        c = self.cfg
        per = f"{c.epoch_batches} batches" if c.epoch_batches else "a pass"
        dev = "" if self.data.dev is None else f" / {len(self.data.dev)} development"
        return (f"1 run: {c.arch} ({self.n_params / 1e6:.2f}M params, {self.model.depth} blocks, {c.topology}) on "
                f"{self.dataset} ({len(self.data.train)} train / {len(self.data.val)} validation{dev} tokens, vocabulary "
                f"{self.data.tok.get_vocab_size()}); {RECIPE['optimizer']} lr {c.lr} wd {c.weight_decay}, {c.epochs} epochs of "
                f"{per} of {c.batch_size} x {c.seq_len} tokens; {self.device} {self.precision}")

    @torch.no_grad()
    def evaluate(self, every_depth=True, split="val"):
        """{depth: (perplexity, mean loss in nats/token, next-token accuracy %)} on the validation tokens (split
        'dev': the development tokens; at most cfg.eval_tokens), at every depth through the shared head (one
        walk) or at full depth only."""
        L, dev = self.model.depth, self.device
        loss, correct, n = torch.zeros(L + 1, device=dev), torch.zeros(L + 1, device=dev), 0
        self.model.eval()
        with self.model.autocast():
            for x, y in self.data.val_batches(self.cfg.batch_size, self.cfg.seq_len, self.cfg.eval_tokens, split):
                outs = enumerate(self.model.walk(x), 1) if every_depth else [(L, None)]
                for d, h in outs:
                    logits = (self.model(x) if h is None else self.model.head(h)).float().flatten(0, 1)
                    loss[d] += F.cross_entropy(logits, y.flatten(), reduction="sum")
                    correct[d] += (logits.argmax(-1) == y.flatten()).sum()
                n += y.numel()
        self.model.train()
        depths = range(1, L + 1) if every_depth else [L]
        return {d: (math.exp(min(float(loss[d] / n), 50.0)), float(loss[d] / n), float(100 * correct[d] / n)) for d in depths}

    def history(self, epoch, wall):
        rows = []
        for split in ("val",) + ("dev",) * (self.data.dev is not None):
            ppl, loss, acc = self.evaluate(every_depth=False, split=split)[self.model.depth]
            self.bad |= not math.isfinite(loss)
            rows += [(f"{split}_loss", loss), (f"{split}_ppl", ppl), (f"{split}_acc_pct", acc)]
        pre = [self.cfg.exp, self.dataset, self.cfg.arch, self.cfg.paradigm, self.seed, epoch, *self.counts(0),
               round(wall, 3), self.lr]
        ppl, loss = rows[1][1], rows[0][1]
        rows = [pre + [m, float("nan") if bool(self.bad[0]) else v] for m, v in rows]
        return rows, f"val ppl {ppl:.2f} loss {loss:.4g}"

    @torch.no_grad()
    def generate(self, prompt, depth, n_new=40, temperature=0.0, seed=0):
        """Continuation of `prompt` (text) by the model truncated to `depth` blocks: greedy (temperature 0) or
        sampled at `temperature` from a generator seeded with `seed`. No KV cache: each token re-reads the context
        (the last cfg.seq_len tokens)."""
        tok, g = self.data.tok, torch.Generator().manual_seed(seed)
        ids = torch.tensor([tok.encode(prompt).ids], device=self.device)
        self.model.eval()
        for _ in range(n_new):
            logits = self.model(ids[:, -self.cfg.seq_len:], depth)[0, -1].float().cpu()
            nxt = logits.argmax() if temperature == 0 else torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=g)[0]
            ids = torch.cat([ids, nxt.view(1, 1).to(self.device)], 1)
        self.model.train()
        return tok.decode(ids[0].tolist())

    def samples_text(self, status):
        cfg, lines = self.cfg, []
        lines.append(f"# {cfg.arch} / {cfg.paradigm} / {cfg.topology} / seed {self.seed} on {self.dataset} ({status}): "
                     f"greedy and sampled (temperature 0.8, seed 0) continuations of {cfg.n_generate} tokens at depths "
                     f"{quarter_depths(self.model.depth)} of {self.model.depth}, through the shared head")
        for prompt in PROMPTS:
            for d in quarter_depths(self.model.depth):
                for how, t in (("greedy", 0.0), ("sampled", 0.8)):
                    text = self.generate(prompt, d, cfg.n_generate, t)
                    lines.append(f"\n## prompt {prompt!r}, depth {d}, {how}\n{text}")
        return "\n".join(lines) + "\n"

    def write_outputs(self, out, history, status, diverged_at, wall):
        cfg, L, bad = self.cfg, self.model.depth, bool(self.bad[0])
        keys = [cfg.exp, self.dataset, cfg.arch, cfg.paradigm, self.seed]
        val = self.evaluate()
        layerwise = [keys + [d, m, float("nan") if bad else val[d][k], status[0]]
                     for d in range(1, L + 1) for k, m in enumerate(("val_ppl", "val_loss", "val_acc_pct"))]
        eff = int(self.state.get("depth", torch.tensor([L]))[0])
        summary = [keys + [status[0], diverged_at[0] or "", *self.counts(0), round(wall, 3), L, eff,
                           round(100 * (1 - eff / L), 2), self.n_params, cfg.lr, sum(p.numel() for p in self.model.params(depth=eff)),
                           int(self.samples[0]) * cfg.seq_len]]
        io.write_csv(out / "layerwise.csv", LAYERWISE, layerwise)
        io.write_csv(out / "history.csv", HISTORY, history)
        io.write_csv(out / "summary.csv", LSUMMARY, summary)
        if cfg.paradigm == "layerdrop":
            self.write_pruned(out, keys, status[0], lambda: dict(zip(("val_ppl", "val_loss", "val_acc_pct"),
                                                                     self.evaluate(every_depth=False)[L])))
        text = self.samples_text(status[0])
        io._atomic(out / "samples.txt", lambda tmp: Path(tmp).write_text(text))
