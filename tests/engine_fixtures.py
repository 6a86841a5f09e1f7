"""Helpers for the engine tests: a tiny synthetic dataset shared by the session."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_CONFIG = REPO / "configs" / "synthetic_afnet.yaml"


def tiny_synthetic(base: Path, num_train: int = 48, num_val: int = 16) -> Path:
    """32x32, 8-frame synthetic frame folders, written once under ``base``."""
    from afnet.data import make_synthetic

    root = base / f"engine_synth_{num_train}_{num_val}"
    if not (root / "synthetic.json").is_file():
        make_synthetic(root, num_train=num_train, num_val=num_val, num_frames=8, size=32, videos=False)
    return root


def tiny_overrides(root: Path, run_dir: Path, **extra) -> list[str]:
    """Overrides of configs/synthetic_afnet.yaml for a run of a few seconds."""
    items = {"data.root": root, "run_dir": run_dir, "data.batch_size": 8, "data.num_workers": 0,
             "optim.epochs": 2, "trainer.progress_bar": False, "trainer.log_every_n_steps": 1}
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]
