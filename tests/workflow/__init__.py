"""Tests of fastai_context/workflow."""
