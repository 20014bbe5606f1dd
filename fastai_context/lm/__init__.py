"""The context-conditioned language model: `data` (the loader and `from_df`), `model` (the
AWD-LSTM reading a context per token), `sampling` (batched, guided generation), `learner`
(`ContextLMLearner`: fastai's `LMLearner` plus generation, perplexity under shuffled contexts and
the paired bootstrap). The public names are re-exported by `fastai_context`."""
