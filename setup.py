"""Install with `pip install -e .` inside an environment that already has torch and fastai.

torch is declared without an upper pin so that an installed torch (e.g. the CPU build
2.13.0) satisfies it and is never replaced. On a fresh machine install
`torch==2.13.0 torchvision==0.28.0` first (the Makefile does): an unpinned fastai pulls
torchvision 0.29, which replaces torch with several GB of CUDA packages.
"""
from setuptools import find_packages, setup

setup(
    name="fastai_context",
    version="0.1.0",
    description="fastai v2 language models and sentence VAEs conditioned on per-document context",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["fastai_context", "fastai_context.*"]),
    # The example configs travel in the wheel: `fastai-context train-lm tiny-lm` needs no checkout.
    package_data={"fastai_context": ["configs/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "fastai>=2.8,<2.9",
        "pandas>=2.0",
        "numpy",
        "scikit-learn",      # controllability regressor (already a fastai dependency)
        "scipy",             # Spearman correlation
        "matplotlib",
        "nltk",
        "spotipy",
        "requests",          # the web audio-feature sources (Spotify through spotipy, ReccoBeats)
        "wordcloud",
        "pyyaml",            # run configs
        "accelerate",        # what fastai.distributed needs for data-parallel training
        "rdata>=1.0",        # reads the R package `billboard`'s .rda originals of the lyrics table (pure Python)
    ],
    extras_require={
        "sweep": ["optuna"],                 # `fastai-context sweep --trials`: optuna's random/TPE search
        # the test suite: pytest (-n 2 through xdist), notebook tests through papermill, and the sweep tests
        "test": ["pytest", "pytest-xdist", "papermill", "ipykernel", "nbformat", "optuna"],
    },
    entry_points={"console_scripts": ["fastai-context=fastai_context.cli:main"]},
)
