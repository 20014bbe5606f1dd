"""Tests of fastai_context/vae."""
