"""Text for the language-model track: a corpus split held-out by document, a tokenizer, token blocks on the device.

Corpora (TrainConfig.datasets, one per job):
  pydoc          offline, ships with Python: the 79 documentation topics of the standard library's
                 `pydoc_data.topics` (~465k characters of real English technical prose, ~130k BPE tokens at
                 vocabulary 2048). One topic = one document.
  hf:NAME[:CFG]  a Hugging Face dataset through `datasets` (e.g. hf:roneneldan/TinyStories,
                 hf:wikitext:wikitext-103-raw-v1, hf:allenai/c4:en): its `text` column; the `validation` split when
                 it has one (else `test`), otherwise held out by document as below.
  a path / glob  local text files through `datasets`' text builder (sample_by='paragraph': paragraphs separated by
                 a blank line are the documents).
Held-out split by document (our choice; no paper fixes one for these corpora): documents in a fixed order (pydoc:
sorted topic names; files: as read), ranked by length, every 10th of the ranking (ranks 5, 15, ...) to validation:
~10% of the documents and of the text (pydoc: 78 distinct topics, 8 held out: 59k of 464k characters). No document is in both splits.

Tokenizer (TrainConfig.tokenizer): 'bpe' trains a byte-level BPE (the GPT-2 scheme, `tokenizers`) of
cfg.vocab_size on the *training* split only, one special token <|endoftext|> (id 0) that separates documents; it
is cached in <data_dir>/lm/ under a name holding the corpus, the size and a hash of the training text, written
atomically (parallel jobs that train it at once write the same file). Any other value is a local tokenizer: a
tokenizer.json file, or a directory with one (a `save_pretrained` model directory), loaded by `tokenizers`.

Token stream: the documents of a split encoded and joined with the separator; training blocks are seq_len + 1
consecutive tokens (inputs and next-token targets). `TokenData.train_batches` yields one epoch: either every
non-overlapping block from a random start offset in [0, seq_len), in random order (epoch_batches = 0: a pass over
the training split), or epoch_batches batches of windows at uniformly random positions (nanoGPT's get_batch; for
corpora too large for a pass per epoch). Validation reads fixed non-overlapping blocks from the start.

Development split (cfg.val_frac > 0): the held-out split above is what the track reports (ANCRé's "validation
perplexity": our test set), so selection reads another one, carved from the training data: the last val_frac of
the training tokens (a contiguous tail, the same for every seed and paradigm; the tokenizer is still trained on
every training document), never trained on. Its metrics are dev_* (lpa_core.lm).
"""
import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

EOT = "<|endoftext|>"
HOLD_OUT = 10  # every 10th document is held out


def _split(docs):
    """(train, validation) documents: ranked by length (stable), every HOLD_OUT-th held out, so the validation
    documents have the training documents' length distribution; each split keeps the input order."""
    docs = list(dict.fromkeys(d for d in docs if d.strip()))  # a text listed twice (pydoc has one) is one document
    if len(docs) < 2:
        raise ValueError(f"datasets: need at least 2 documents to hold one out, got {len(docs)}")
    rank = sorted(range(len(docs)), key=lambda i: len(docs[i]))
    held = {i for r, i in enumerate(rank) if r % HOLD_OUT == HOLD_OUT // 2} or {rank[-1]}
    return [d for i, d in enumerate(docs) if i not in held], [d for i, d in enumerate(docs) if i in held]


def load_corpus(name):
    """(train documents, validation documents) of a corpus name (see the module docstring)."""
    if name == "pydoc":
        from pydoc_data.topics import topics

        return _split([topics[k] for k in sorted(topics)])
    import datasets

    if name.startswith("hf:"):
        hf_name, _, hf_cfg = name[3:].partition(":")
        ds = datasets.load_dataset(hf_name, hf_cfg or None)
        held = next((s for s in ("validation", "test") if s in ds), None)
        if held:
            return list(ds["train"]["text"]), list(ds[held]["text"])
        return _split(list(ds["train"]["text"]))
    files = sorted(glob.glob(name)) if not os.path.isdir(name) else sorted(str(p) for p in Path(name).rglob("*.txt"))
    if not files:
        raise ValueError(f"datasets: '{name}' is not pydoc, hf:NAME[:CONFIG] or existing text files")
    ds = datasets.load_dataset("text", data_files=files, sample_by="paragraph", split="train")
    return _split(list(ds["text"]))


def train_bpe(docs, vocab_size):
    """A byte-level BPE tokenizer (GPT-2 scheme) trained on docs, with <|endoftext|> as token 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer=trainer)
    return tok


def get_tokenizer(spec, train_docs, vocab_size, data_dir, corpus):
    """The tokenizer of cfg.tokenizer: 'bpe' (trained on train_docs, cached in <data_dir>/lm/) or a local file/dir."""
    from tokenizers import Tokenizer

    if spec != "bpe":
        path = Path(spec) / "tokenizer.json" if Path(spec).is_dir() else Path(spec)
        if not path.is_file():
            raise ValueError(f"tokenizer: no tokenizer.json at '{spec}' (valid: bpe, a tokenizer.json, or a directory holding one)")
        return Tokenizer.from_file(str(path))
    digest = hashlib.sha1("\x00".join(train_docs).encode()).hexdigest()[:10]
    label = "".join(c if c.isalnum() else "_" for c in corpus)[:40]
    path = Path(data_dir) / "lm" / f"{label}_bpe{vocab_size}_{digest}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    tok = train_bpe(train_docs, vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tok.save(str(tmp))
    os.replace(tmp, path)
    return tok


def separator(tok):
    """The id that ends a document: <|endoftext|> when the tokenizer has it, else its eos-like token, else 0."""
    for t in (EOT, "</s>", "<|im_end|>", "<eos>"):
        i = tok.token_to_id(t)
        if i is not None:
            return i
    return 0


def encode(tok, docs):
    """One 1-D int64 tensor: the documents' tokens, each followed by the separator."""
    sep, ids = separator(tok), []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        ids += enc.ids + [sep]
    return torch.tensor(ids, dtype=torch.long)


@dataclass
class TokenData:
    """Training and validation token streams on the device, and the tokenizer."""

    train: torch.Tensor
    val: torch.Tensor
    tok: object
    n_docs: tuple
    dev: torch.Tensor = None  # the tail held out of the training tokens (val_frac > 0), else None

    def train_batches(self, batch_size, seq_len, gen, epoch_batches=0):
        """One epoch of (x, y) [B, T] next-token batches (see the module docstring); gen: a CPU generator."""
        n = len(self.train)
        if epoch_batches:
            for _ in range(epoch_batches):
                start = torch.randint(0, n - seq_len, (batch_size,), generator=gen)
                yield self._block(self.train, start.to(self.train.device), seq_len)
            return
        off = int(torch.randint(0, seq_len, (1,), generator=gen))
        starts = off + seq_len * torch.randperm((n - 1 - off) // seq_len, generator=gen)
        for k in range(0, len(starts) - batch_size + 1, batch_size):
            yield self._block(self.train, starts[k:k + batch_size].to(self.train.device), seq_len)

    def val_batches(self, batch_size, seq_len, max_tokens=0, split="val"):
        """Fixed non-overlapping blocks of split 'val' (or 'dev') from the start (at most max_tokens target tokens; 0 = all)."""
        stream = getattr(self, split)
        n_blocks = (len(stream) - 1) // seq_len
        if max_tokens:
            n_blocks = min(n_blocks, max(1, max_tokens // seq_len))
        starts = seq_len * torch.arange(n_blocks, device=stream.device)
        for k in range(0, n_blocks, batch_size):
            yield self._block(stream, starts[k:k + batch_size], seq_len)

    @staticmethod
    def _block(stream, starts, seq_len):
        idx = starts[:, None] + torch.arange(seq_len + 1, device=stream.device)
        b = stream[idx]
        return b[:, :-1], b[:, 1:]


def load_text(corpus, tokenizer, vocab_size, seq_len, data_dir="data", device="cpu", val_frac=0.0):
    """TokenData of a corpus (see the module docstring); every split must hold more than one block."""
    train_docs, val_docs = load_corpus(corpus)
    tok = get_tokenizer(tokenizer, train_docs, vocab_size, data_dir, corpus)
    train, val = encode(tok, train_docs), encode(tok, val_docs)
    n_dev = round(val_frac * len(train))
    if val_frac and n_dev <= seq_len + 1:
        raise ValueError(f"val_frac: {val_frac} of the {len(train)} training tokens of '{corpus}' is not more than one "
                         f"block of seq_len {seq_len} + 1")
    train, dev = (train[:-n_dev], train[-n_dev:].to(device)) if val_frac else (train, None)
    for split, t in (("training", train), ("validation", val)):
        if len(t) <= seq_len + 1:
            raise ValueError(f"seq_len: {seq_len} is not shorter than the {len(t)} tokens of the {split} split of '{corpus}'")
    return TokenData(train.to(device), val.to(device), tok, (len(train_docs), len(val_docs)), dev)
