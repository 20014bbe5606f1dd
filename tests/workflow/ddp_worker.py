"""One rank of the 2-process DDP test: `torchrun --nproc_per_node 2 tests/ddp_worker.py OUT_DIR`.

Trains a tiny context LM on real Spotify track names for a few steps inside `distrib_ctx`
and saves, per rank, the training batches it saw and its final parameters."""
import sys
from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastai.torch_core import rank_distrib, set_seed

from fastai_context import ContextTextDataLoaders, context_language_model_learner, datasets
from fastai_context.workflow.distributed import distrib_ctx

BS, SEQ_LEN, SHUFFLE_SEED = 4, 8, 5
TINY = dict(emb_sz=16, n_hid=32, n_layers=1, pad_token=1, bidir=False, output_p=0.1, hidden_p=0.1, input_p=0.1,
            embed_p=0.02, weight_p=0.1, tie_weights=True, out_bias=True, context_proj=0)


def make_dls(bs=BS):
    "The same loaders on every rank (and in the test, to compare with one process)."
    df = datasets.spotify_tracks(dedupe=True).dropna(subset=["track_name"]).sample(120, random_state=0)
    return ContextTextDataLoaders.from_df(df, "track_name", ["energy"], bs=bs, seq_len=SEQ_LEN, seed=0, min_freq=1,
                                          device="cpu", shuffle_seed=SHUFFLE_SEED)


class RecordBatches(Callback):
    "Keep every training batch (x, ctx, y) this rank trained on, and which epoch it belonged to."
    def before_fit(self):
        self.batches = []

    def before_batch(self):
        if self.training:
            self.batches.append((self.epoch, *(t.clone() for t in (*self.xb, *self.yb))))


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    dls = make_dls()
    set_seed(100 + rank_distrib())           # different initial weights per rank: DDP must sync them
    learn = context_language_model_learner(dls, config=TINY)
    rec = RecordBatches()
    with distrib_ctx(learn):
        learn.fit(2, 1e-2, cbs=rec)
    torch.save({"batches": rec.batches, "params": {k: v.detach().clone() for k, v in learn.model.state_dict().items()},
                "valid_loss": float(learn.recorder.values[-1][1]), "world_size": torch.distributed.get_world_size()},
               out / f"rank{rank_distrib()}.pt")
