"""Running experiments: `runs` (configs, run folders, locks), `checkpoint` (exact resume),
`memory` (a long CPU run's memory kept flat), `distributed` (data-parallel training), `sweep`
(grid and optuna), `commands` (what a recipe is, and its run-folder lifecycle) and `recipes`
(train-lm, generate, wordclouds, train-vae, homotopy as Python functions; `fastai_context.cli`
is their parser)."""
