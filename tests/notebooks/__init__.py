"""Tests of fastai_context notebooks (nbs/), executed on reduced settings."""
