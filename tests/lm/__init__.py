"""Tests of fastai_context/lm."""
