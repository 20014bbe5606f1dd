"""`ContextLMLearner`: fastai's `LMLearner` for context-conditioned language models.

Training is fastai's (`fit_one_cycle`, `lr_find`, `RNNRegularizer`, `ModelResetter`,
`to_fp16`, `save`/`load`, `export`/`load_learner`); this module adds what conditioning
needs: generation at a chosen context, a check that the context matters, and starting
from a plain fastai language model.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import fastai.callback.fp16  # noqa: F401  (adds `to_fp16` to Learner)
import fastai.callback.schedule  # noqa: F401  (adds `fit_one_cycle` and `lr_find` to Learner)
import torch
import torch.nn.functional as F
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import Perplexity, accuracy
from fastai.text.learner import LMLearner, _get_text_vocab, clean_raw_keys, decode_spec_tokens, match_embeds
from fastai.text.models.awdlstm import awd_lstm_lm_config
from fastcore.meta import delegates
from fastcore.xtras import load_pickle
from fastprogress.fastprogress import progress_bar

from .checkpoint import RaiseOnNaNCallback
from .data import ContextLanguageModelLoader
from .generation import ContextLSTMSampler
from .models import ContextAWD_LSTM, _context_model_meta, get_context_language_model
from .text import BOS, PAD, UNK

__all__ = ["ContextLMLearner", "context_language_model_learner"]


class ContextLMLearner(LMLearner):
    "An `LMLearner` whose model reads a context vector per token, with conditioned generation."

    # ------------------------------------------------------------- context
    @property
    def context_encoder(self):
        "The `ContextEncoder` fitted on the training split (it travels with the loaders)."
        enc = getattr(self.dls.train, "context_encoder", None)
        if enc is None:
            raise AttributeError("these loaders carry no context_encoder: build them with "
                                 "ContextTextDataLoaders.from_df, or pass context_encoder= to the loaders")
        return enc

    # ---------------------------------------------------------- generation
    def _tokenize(self, text: str) -> list[int]:
        "Token ids of `text` as in training (fastai's tokenizer puts `xxbos` first), one leading `xxbos`."
        ids = self.dls.train_ds.numericalize(self.dls.train_ds.tokenizer(text)).tolist()
        bos = self.dls.vocab.index(BOS)
        while len(ids) > 1 and ids[0] == ids[1] == bos:     # start='xxbos' tokenizes as 'xxbos xxbos'
            ids = ids[1:]
        return ids

    def _decode(self, ids: Sequence[int], decoder=decode_spec_tokens, doc_sep: str | None = None) -> str:
        "fastai's `predict` decoding: drop `xxbos`/`xxpad`, apply the capitalization/repetition rules."
        vocab, sep = self.dls.vocab, self.dls.train_ds.tokenizer.sep
        docs, cur = [], []
        for i in ids:
            tok = vocab[i]
            if tok == BOS:
                docs.append(cur)
                cur = []
            elif tok != PAD:
                cur.append(tok)
        docs = [sep.join(decoder(d)) for d in docs + [cur] if d]
        return (sep if doc_sep is None else doc_sep).join(docs)

    def _banned(self, no_unk: bool) -> list[int]:
        "Never drawn: padding, fastai's `xxfake` vocabulary fillers, and (with `no_unk`) `xxunk`."
        return [i for i, tok in enumerate(self.dls.vocab)
                if tok == PAD or tok.startswith("xxfake") or (no_unk and tok == UNK)]

    def _sample_ids(self, context: torch.Tensor, start: str, n_streams: int, n_words: int, seed: int | None,
                    no_bar: bool, **sampling) -> list[list[int]]:
        "Prime `n_streams` copies of `start` at one encoded `context` row; draw `n_words` tokens for each."
        device = self.dls.device
        prompt = torch.tensor(self._tokenize(start), device=device).repeat(n_streams, 1)
        self.model.eval()
        sampler = ContextLSTMSampler(self.model, context.to(device).repeat(n_streams, 1))
        generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
        words = sampler.sample(prompt, n_words, generator=generator, no_bar=no_bar, **sampling)
        return torch.cat([prompt, words], dim=1).tolist()

    def generate(self, context: Mapping, n_words: int, n_samples: int = 1, temperature: float = 1.,
                 top_k: int | None = None, top_p: float | None = None, start: str = BOS, seed: int | None = None,
                 no_unk: bool = True, no_bar: bool = False, doc_sep: str | None = None,
                 decoder=decode_spec_tokens) -> list[str]:
        """Sample `n_samples` texts of `n_words` tokens after `start`, all at `context`
        (e.g. `{'energy': 1.0}`), as one batch with the LSTM state carried forward: the cost is
        linear in `n_words`. Reproducible with `seed`. Returns one decoded string per sample
        (`start` included, like `predict`); `doc_sep` (e.g. `' / '`) marks where the model began
        a new document, which is dropped by default as in fastai's `predict`."""
        if n_words < 0 or n_samples < 1:
            raise ValueError(f"n_words={n_words} must be >= 0 and n_samples={n_samples} >= 1")
        if context is None:
            raise ValueError(f"generate needs a context, e.g. {{'{self.context_encoder.columns[0]}': ...}}")
        ids = self._sample_ids(self.context_encoder.encode(context), start, n_samples, n_words, seed, no_bar,
                               temperature=temperature, top_k=top_k, top_p=top_p, banned=self._banned(no_unk))
        return [self._decode(row, decoder, doc_sep) for row in ids]

    def predict(self, text: str, n_words: int = 1, no_unk: bool = True, temperature: float = 1.,
                min_p: float | None = None, no_bar: bool = False, decoder=decode_spec_tokens,
                context: Mapping | None = None, seed: int | None = None) -> str:
        """fastai's `LMLearner.predict` at a `context` (a mapping feature -> value, encoded by
        `dls.context_encoder`; `None` feeds the training mean): return `text` and the `n_words`
        that come after. Carries the LSTM state forward instead of re-running the text per word."""
        enc = self.context_encoder
        row = enc.mean_context() if context is None else enc.encode(context)
        ids = self._sample_ids(row, text, 1, n_words, seed, no_bar, temperature=temperature, min_p=min_p,
                               banned=self._banned(no_unk))
        return self._decode(ids[0], decoder)

    # ----------------------------------------------------- does context help?
    def _perplexity(self, dl: ContextLanguageModelLoader) -> float:
        "Token-level perplexity of `dl` (each token weighs the same; the last short batch included)."
        self.model.eval()
        self.model.reset()
        nll, n = 0., 0
        with torch.no_grad():
            for x, ctx, y in progress_bar(dl, leave=False):
                logits = self.model(x, ctx)[0]
                nll += F.cross_entropy(logits.flatten(0, 1).float(), y.as_subclass(torch.Tensor).flatten(),
                                       reduction="sum").item()
                n += y.numel()
        self.model.reset()
        return float(torch.tensor(nll / n).exp())

    def context_perplexity(self, dl: ContextLanguageModelLoader | None = None, seed: int = 0) -> dict[str, float]:
        """Validation perplexity with the true context (`'true'`), with the contexts shuffled
        across documents (`'shuffled'`, permutation drawn with `seed`) and with every document
        at the training mean (`'mean'`). If context helps, `'true'` is clearly the lowest."""
        dl = self.dls.valid if dl is None else dl
        if not isinstance(dl, ContextLanguageModelLoader):
            raise TypeError(f"context_perplexity needs a ContextLanguageModelLoader, got {type(dl).__name__}")
        perm = torch.randperm(len(dl.context), generator=torch.Generator().manual_seed(seed))
        mean = self.context_encoder.mean_context()
        variants = {"true": dl.context, "shuffled": dl.context[perm], "mean": mean.expand_as(dl.context).clone()}
        return {k: self._perplexity(dl.new(context=v, shuffle=False)) for k, v in variants.items()}

    # ------------------------------------------------- start from a plain LM
    def load_plain_lm(self, weights: str | Path | Mapping, vocab: str | Path | Sequence[str]) -> "ContextLMLearner":
        """Load a plain fastai `AWD_LSTM` language model (a `.pth` file or state dict, saved with
        or without optimizer, and its vocabulary as a list or `.pkl`) into this context model.

        Embeddings are matched to this vocabulary like fastai's `load_pretrained`; the first
        layer's context input weights (and the context projection) start at zero, so right after
        loading the outputs equal the plain model's. Unlike `load_pretrained` this does not
        freeze: `freeze()` would also freeze the context weights of the first layer.

        The vocabulary must be the one the weights were trained with (as many tokens as the
        embedding has rows); if it is also this learner's vocabulary, rows are copied one for one."""
        if isinstance(weights, (str, Path)):
            try:
                weights = torch.load(weights, map_location="cpu", weights_only=False)
            except FileNotFoundError:
                raise FileNotFoundError(f"no weights file at {str(weights)!r}") from None
            except Exception as e:
                raise ValueError(f"{str(weights)!r} is not a PyTorch weights file ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())[:120]}); pass the .pth that learn.save or torch.save "
                                 "wrote for the plain language model") from None
        if not isinstance(weights, Mapping):
            raise ValueError(f"the weights must be a state dict (a mapping of parameter names to tensors), "
                             f"not {type(weights).__name__}")
        weights = dict(weights.get("model", weights))
        if isinstance(vocab, (str, Path)):
            try:
                vocab = load_pickle(vocab)
            except FileNotFoundError:
                raise FileNotFoundError(f"no vocabulary file at {str(vocab)!r}") from None
            except Exception as e:
                raise ValueError(f"{str(vocab)!r} is not a pickled vocabulary ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())[:120]}); pass the .pkl list saved with the weights") from None
        if isinstance(vocab, str) or not isinstance(vocab, Sequence) or not all(isinstance(t, str) for t in vocab):
            raise ValueError("the vocabulary must be a list of token strings (the one saved with the weights)")
        weights, old_vocab, new_vocab = clean_raw_keys(weights), list(vocab), list(_get_text_vocab(self.dls))
        emb = weights.get("0.encoder.weight")
        if emb is not None and emb.shape[0] != len(old_vocab):
            raise ValueError(f"the vocabulary has {len(old_vocab)} tokens but the weights' embedding has "
                             f"{emb.shape[0]} rows: pass the vocabulary saved with these weights")
        if old_vocab != new_vocab:                 # `match_embeds` maps every duplicate `xxfake` to the last one
            weights = match_embeds(weights, old_vocab, new_vocab)
        encoder = self.model[0]
        emb_sz = encoder.emb_sz
        state = self.model.state_dict()
        expected = {k for k in state if not k.startswith("0.context_proj.")}
        if set(weights) != expected:
            raise ValueError(f"these weights are not a plain AWD_LSTM language model of this architecture: "
                             f"missing {sorted(expected - set(weights))}, unexpected {sorted(set(weights) - expected)}")
        for k, w in weights.items():
            target = state[k]
            if k == "0.rnns.0.module.weight_ih_l0":     # plain input [emb] -> context input [emb ; ctx]
                if w.shape != (target.shape[0], emb_sz):
                    raise ValueError(f"{k} has shape {tuple(w.shape)}; this model needs {(target.shape[0], emb_sz)} "
                                     f"plus the context columns: use the same config as the plain model")
                target[:, :emb_sz] = w
                target[:, emb_sz:] = 0.
            elif w.shape != target.shape:
                raise ValueError(f"{k} has shape {tuple(w.shape)} but this model's is {tuple(target.shape)}: "
                                 "build the learner with the plain model's config (e.g. config='fastai')")
            else:
                target.copy_(w)
        if encoder.context_proj is not None:
            state["0.context_proj.weight"].zero_()
            state["0.context_proj.bias"].zero_()
        self.model.load_state_dict(state)
        self.model.reset()
        return self


@delegates(Learner.__init__)
def context_language_model_learner(dls, arch=ContextAWD_LSTM, config: Mapping | str | None = None,
                                   drop_mult: float = 1., pretrained: bool = False, metrics=None,
                                   **kwargs) -> ContextLMLearner:
    """Like fastai's `language_model_learner`, for context loaders (`ContextTextDataLoaders`).

    `config=None` is a CPU-sized model (`context_lm_config`); `config='fastai'` is fastai's
    `awd_lstm_lm_config` (needed for `pretrained=True`, which downloads fastai's WikiText-103
    weights and loads them with `load_plain_lm`). Metrics default to accuracy and perplexity."""
    vocab = _get_text_vocab(dls)
    n_context = dls.train.context.shape[1]
    model = get_context_language_model(arch, len(vocab), n_context, config=config, drop_mult=drop_mult)
    metrics = [accuracy, Perplexity()] if metrics is None else metrics
    learn = ContextLMLearner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=metrics,
                             splitter=_context_model_meta[arch]["split_lm"], **kwargs)
    if pretrained:
        enc, wt103 = learn.model[0], awd_lstm_lm_config
        if (enc.emb_sz, enc.n_hid, enc.n_layers) != (wt103["emb_sz"], wt103["n_hid"], wt103["n_layers"]):
            raise ValueError("pretrained=True loads fastai's WikiText-103 AWD_LSTM (emb 400, hidden 1152, 3 layers): "
                             "pass config='fastai'")
        from fastai.data.external import URLs, untar_data
        path = untar_data(URLs.WT103_FWD, c_key="model")
        learn.load_plain_lm(next(path.glob("*.pth")), next(path.glob("*.pkl")))
    return learn.add_cb(RaiseOnNaNCallback())      # a diverged fit stops with a clear error
