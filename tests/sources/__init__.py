"""Tests of fastai_context/sources."""
