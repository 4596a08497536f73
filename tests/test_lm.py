"""The language-model track: the adapter keeps the library's numbers (depth-k logits = a truncated transformers
forward, full depth = the library's logits), inactive decoder layers get no update under LPA (bit for bit), the
offline corpus is split by document and the tokenizer is trained on the training split only, local text files
load through `datasets`, a save_pretrained directory trains, and every paradigm runs a tiny job through the loop.
CPU only; a tiny vocabulary and model."""
import json

import pandas as pd
import pytest
import torch

from lpa_core._torchvision import import_transformers

pytest.importorskip("transformers")
transformers = import_transformers()  # (beside a torchvision that cannot load its ops)
pytest.importorskip("tokenizers")
pytest.importorskip("datasets")

from lpa_core import lm, text  # noqa: E402
from lpa_core.config import TrainConfig  # noqa: E402
from lpa_core.lm import LM_ARCHS, LMStack, LMTask, lm_config, quarter_depths  # noqa: E402
from lpa_core.registry import create_model  # noqa: E402
from lpa_core.paradigms import PARADIGMS, lpa  # noqa: E402
from lpa_core import train as train_mod  # noqa: E402
from lpa_core.train import train  # noqa: E402

torch.set_num_threads(1)
QUIET = lambda msg: None  # noqa: E731
TINY = dict(arch="lm_tiny", datasets=("pydoc",), seq_len=16, vocab_size=300, batch_size=4, epoch_batches=2, epochs=2,
            eval_tokens=256, n_generate=3, lr=3e-3, eval_every=1, ckpt_every_s=1e9)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("lmdata"))


def tiny_cfg(data_dir, **kw):
    return TrainConfig(**{**TINY, "data_dir": data_dir, **kw})


# --- model --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["lm_tiny", "qwen2_tiny"])
def test_depth_k_logits_equal_truncated_library_forward(arch):
    torch.manual_seed(0)
    full = transformers.AutoModelForCausalLM.from_config(lm_config(arch, 97)).eval()
    model = LMStack(full)
    x = torch.randint(0, 97, (2, 11))
    with torch.no_grad():
        assert torch.equal(model(x), full(x).logits)
        for k in range(1, model.depth):
            c = lm_config(arch, 97)
            c.num_hidden_layers = k
            short = transformers.AutoModelForCausalLM.from_config(c).eval()
            short.load_state_dict(full.state_dict(), strict=False)  # the first k layers, embedding, norm, head
            assert torch.allclose(model(x, depth=k), short(x).logits, atol=1e-6, rtol=0)
            assert torch.equal(model(x, depth=k), model.head(model.features(x, k)[-1]))


def test_tied_embedding_listed_once_and_ancre_runs():
    m = create_model("qwen2_tiny", d_in=97, d_out=97, topology="ancre", tau=0.01)
    ps = m.params()
    assert len(ps) == len({id(p) for p in ps}) == len(list(m.parameters()))
    assert m.stem.embed_tokens.weight is m.head.lm_head.weight
    assert m(torch.randint(0, 97, (2, 5))).shape == (2, 5, 97)
    assert all(b.shortcut.shape == (1, j) for j, b in enumerate(m.blocks, 1))


def test_named_sizes_match_ancre_table7_depths():
    assert [lm_config(a, 32000).num_hidden_layers for a in ("llama_60m", "llama_130m", "llama_350m")] == [8, 12, 24]
    assert quarter_depths(48) == [12, 24, 36, 48] and quarter_depths(4) == [1, 2, 3, 4]
    n = sum(p.numel() for p in create_model("llama_60m", d_in=32000, d_out=32000).parameters())
    assert 55e6 < n < 60e6  # GaLore's "60M" (LLaMA-60M: 58.1M with T5's 32k vocabulary, untied)


# --- data ---------------------------------------------------------------------------------------------------------

def test_pydoc_split_by_document_and_tokenizer_from_training_split(data_dir):
    train_docs, val_docs = text.load_corpus("pydoc")
    assert len(val_docs) == 8 and len(train_docs) == 70 and not set(train_docs) & set(val_docs)
    frac = sum(map(len, val_docs)) / sum(map(len, train_docs + val_docs))
    assert 0.05 < frac < 0.15
    tok = text.get_tokenizer("bpe", train_docs, 300, data_dir, "pydoc")
    assert tok.get_vocab_size() == 300 and tok.token_to_id(text.EOT) == 0
    cached = list((text.Path(data_dir) / "lm").glob("pydoc_bpe300_*.json"))
    assert len(cached) == 1
    assert text.get_tokenizer("bpe", train_docs, 300, data_dir, "pydoc").get_vocab() == tok.get_vocab()
    s = "The import statement"
    assert tok.decode(tok.encode(s).ids) == s
    d = text.load_text("pydoc", "bpe", 300, 16, data_dir)
    x, y = next(d.train_batches(4, 16, torch.Generator().manual_seed(0)))
    assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    n_val = sum(len(xb) for xb, _ in d.val_batches(4, 16))
    assert n_val == (len(d.val) - 1) // 16


def test_local_text_files_through_datasets(tmp_path, data_dir):
    for i in range(3):
        (tmp_path / f"doc{i}.txt").write_text("\n\n".join(f"Paragraph {i}.{k}: the quick brown fox jumps over the lazy dog."
                                                          for k in range(5)))
    train_docs, val_docs = text.load_corpus(str(tmp_path / "*.txt"))
    assert len(train_docs) + len(val_docs) == 15 and len(val_docs) == 1 and not set(train_docs) & set(val_docs)
    d = text.load_text(str(tmp_path), "bpe", 280, 8, data_dir)
    assert len(d.train) > 8 and d.tok.get_vocab_size() <= 280
    with pytest.raises(ValueError, match="^datasets:"):
        text.load_corpus(str(tmp_path / "none*.txt"))


def test_lm_config_keys():
    with pytest.raises(ValueError, match="^seq_len: applies to language models only"):
        TrainConfig(seq_len=32)
    with pytest.raises(ValueError, match="^width: applies to"):
        TrainConfig(arch="lm_tiny", datasets=("pydoc",), width=32)
    with pytest.raises(ValueError, match="^datasets/seeds:"):
        TrainConfig(arch="lm_tiny", datasets=("pydoc",), seeds=(0, 1))
    with pytest.raises(ValueError, match="^arch:"):
        TrainConfig(arch="lm_huge")
    assert TrainConfig(arch="lm_tiny", datasets=("pydoc",)).task == "lm"


# --- training -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wiring", ["add", "replace"])
def test_lpa_leaves_inactive_decoder_layers_untouched(data_dir, wiring):
    """A prefix step at depth d changes no parameter, gradient-free Adam state or step count of decoder layers > d,
    bit for bit (ANCRé's shortcut logits of those blocks included), in both wirings."""
    ctx = LMTask(tiny_cfg(data_dir, topology="ancre", tau=0.01, weight_decay=0.1, wiring=wiring, shortcut_decay="same"))
    x, y = next(ctx.batches())
    ctx.step(ctx.loss(x, y), ctx.model.params())  # every block has optimizer state now
    for d in range(1, ctx.model.depth):
        deep = [p for b in ctx.model.blocks[d:] for p in b.parameters()]
        before = [p.detach().clone() for p in deep]
        state = [{k: v.clone() for k, v in ctx.opt.state[p].items()} for p in deep]
        ctx.step(ctx.loss(x, y, depth=d), ctx.model.params(depth=d))
        assert all(torch.equal(a, p) for a, p in zip(before, deep))
        assert all(all(torch.equal(s[k], ctx.opt.state[p][k]) for k in s) for s, p in zip(state, deep))
        shallow = ctx.model.blocks[d - 1].layer.mlp.down_proj.weight
        assert ctx.opt.state[shallow]["step"] == 2  # block d stepped now (and once at full depth)


@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_every_paradigm_trains_a_tiny_lm(paradigm, data_dir, tmp_path):
    cfg = tiny_cfg(data_dir, paradigm=paradigm, adaptive_warmup=1, topology="ancre" if paradigm == "lpa" else "cascade")
    status = train(cfg, tmp_path / "run", ckpt_dir=tmp_path / "ck", log=QUIET)
    assert status == ["ok"]
    lw = pd.read_csv(tmp_path / "run" / "layerwise.csv")
    L = LM_ARCHS["lm_tiny"][1]["num_hidden_layers"]
    ppl = lw[lw.metric == "val_ppl"].set_index("depth").value
    assert list(ppl.index) == list(range(1, L + 1)) and (ppl > 1).all() and (ppl < 300).all()
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert set(hist.metric) == {"val_loss", "val_ppl", "val_acc_pct"} and list(hist.epoch.unique()) == [1, 2]
    assert (tmp_path / "run" / "coeffs.csv").exists() and (tmp_path / "run" / "run.json").exists()
    samples = (tmp_path / "run" / "samples.txt").read_text()
    assert all(f"depth {d}, greedy" in samples for d in quarter_depths(L))
    assert (tmp_path / "run" / "pruned.csv").exists() == (paradigm == "layerdrop")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "transformers" in run["versions"]


def test_pretrained_directory_trains_and_keeps_its_weights(data_dir, tmp_path):
    """A save_pretrained directory (a tiny Qwen2 with a tokenizer.json) is an arch: its weights are loaded, its
    tokenizer is used (tokenizer auto), and it trains under LPA."""
    train_docs, _ = text.load_corpus("pydoc")
    tok = text.get_tokenizer("bpe", train_docs, 300, data_dir, "pydoc")
    torch.manual_seed(1)
    saved = transformers.AutoModelForCausalLM.from_config(lm_config("qwen2_tiny", 300))
    d = tmp_path / "tiny_qwen2"
    saved.save_pretrained(d)
    tok.save(str(d / "tokenizer.json"))
    cfg = tiny_cfg(data_dir, arch=str(d), paradigm="lpa", vocab_size=8192)
    assert cfg.task == "lm"
    ctx = LMTask(cfg)
    assert torch.equal(ctx.model.blocks[0].layer.mlp.up_proj.weight, saved.model.layers[0].mlp.up_proj.weight)
    x = torch.randint(0, 300, (2, 7))
    with torch.no_grad():
        assert torch.allclose(ctx.model(x), saved(x).logits, atol=1e-6, rtol=0)
    assert train(cfg, tmp_path / "run", ckpt_dir=tmp_path / "ck", log=QUIET) == ["ok"]
    with pytest.raises(ValueError, match="^arch:"):
        create_model(str(tmp_path / "missing"), d_in=None, d_out=None)


def test_resume_gives_the_uninterrupted_result(data_dir, tmp_path, monkeypatch):
    cfg = tiny_cfg(data_dir, paradigm="lpa", epochs=3, ckpt_every_s=0.0)
    train(cfg, tmp_path / "a", ckpt_dir=tmp_path / "cka", log=QUIET)

    def killed(ctx, epoch):  # the job dies in its second epoch, after the first epoch's checkpoint
        if epoch == 1:
            raise KeyboardInterrupt
        lpa(ctx, epoch)

    monkeypatch.setattr(train_mod, "get_paradigm", lambda name: killed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", ckpt_dir=tmp_path / "ckb", log=QUIET)
    monkeypatch.undo()
    lm._DATA.clear()
    train(cfg, tmp_path / "b", ckpt_dir=tmp_path / "ckb", log=QUIET)
    for f in ("layerwise.csv", "history.csv"):
        a, b = (pd.read_csv(tmp_path / r / f) for r in ("a", "b"))
        pd.testing.assert_frame_equal(a.drop(columns="wall_s", errors="ignore"), b.drop(columns="wall_s", errors="ignore"))
    assert (tmp_path / "a" / "samples.txt").read_text() == (tmp_path / "b" / "samples.txt").read_text()


def test_table5_and_figures_from_runs(data_dir, tmp_path):
    from lpa_core.cli import main

    dirs = []
    for paradigm, topology in (("simultaneous", "cascade"), ("lpa", "cascade"), ("lpa", "ancre")):
        d = tmp_path / paradigm / topology
        train(tiny_cfg(data_dir, exp="lm", paradigm=paradigm, topology=topology), d, ckpt_dir=tmp_path / "ck" / paradigm / topology, log=QUIET)
        dirs.append(str(d))
    out = tmp_path / "out"
    assert main(["table", "table5", "--runs", *dirs, "--paper", "config/paper_results.csv", "--out-csv",
                 str(out / "table5.csv"), "--out-md", str(out / "table5.md")]) == 0
    assert main(["samples", "--runs", *dirs, "--out", str(out / "s.txt")]) == 0
    tab = pd.read_csv(out / "table5.csv")
    ppl = tab[tab.metric == "val_ppl"]
    assert len(ppl) == 3 * 4 and set(ppl.topology) == {"cascade", "ancre_add"}  # the LM default wiring: the authors'
    steps = tab[tab.metric == "steps"].set_index(["paradigm", "topology"])["mean"]
    assert steps[("lpa", "cascade")] == 5 * steps[("simultaneous", "cascade")]  # L + 1 = 5 steps per batch
    md = (out / "table5.md").read_text()
    assert "cannot be re-run here" in md and "| simultaneous (miniqwen48_1b) | 1.36 |" in md
    assert (out / "s.txt").read_text().count("## prompt") == 3 * len(lm.PROMPTS) * 4 * 2
    assert main(["figures", "lm", "--runs", *dirs, "--outdir", str(out)]) == 0
    assert (out / "fig_lm_layerwise.png").stat().st_size > 0 and (out / "fig_lm_ancre_curves.png").stat().st_size > 0
