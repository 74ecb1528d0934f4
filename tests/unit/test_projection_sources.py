"""train_projection's adapt options: a warm start keeps the projection (lr 0 changes nothing),
the replay source and the progress bar run."""
import numpy as np
import torch

from productsearch.training.projection import ProjectionConfig, train_projection


class TinyTower(torch.nn.Module):
    """The part of LiteImageTower that train_projection uses: `proj` and `embed`."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.proj = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 8))

    def embed(self, feats):
        return torch.nn.functional.normalize(self.proj(feats), dim=1)


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    X, y = torch.randn(40, 16, generator=g), torch.randint(0, 4, (40,), generator=g)
    T = np.random.default_rng(seed).normal(size=(4, 8)).astype(np.float32)
    return X, y, T


def weights(tower):
    return [p.detach().clone() for p in tower.proj.parameters()]


def test_warm_start_with_lr_zero_keeps_the_projection_and_the_bar_runs(capsys):
    tower = TinyTower()
    start = weights(tower)
    X, y, T = data()
    cfg = ProjectionConfig(epochs=2, batch_size=16, photo_batch=0, replay_batch=8, lr=0.0, warm_start=True)
    log = train_projection(tower, X, y, T, cfg=cfg, log=lambda *_: None, replay=data(1), progress=True)
    assert log["steps"] == 6
    assert all(torch.equal(a, b) for a, b in zip(start, weights(tower)))
    assert "6/6" in capsys.readouterr().err  # tqdm's bar, with its step count
