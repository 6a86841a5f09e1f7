"""Exact resume after SIGKILL, per-rank sharding, and a 2-process DDP run (gloo, CPU)."""
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from afnet.checkpoint import read_checkpoint
from afnet.engine import evaluate, load_config, train
from afnet.engine.datamodule import VideoDataModule
from tests.helpers import REPO, SYNTHETIC_CONFIG, tiny_overrides, tiny_synthetic

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return tiny_synthetic(tmp_path_factory.getbasetemp())


def test_each_rank_reads_its_own_shard(synth):
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, "unused"))
    seen = []
    for rank in (0, 1):
        dm = VideoDataModule(cfg.data, seed=cfg.seed)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        dm.setup("fit")
        loader = dm.train_dataloader().loader
        loader.set_epoch(3)
        seen.append([int(i) for batch in loader for i in batch.index])
    assert len(seen[0]) == len(seen[1]) == 24
    assert set(seen[0]).isdisjoint(seen[1]) and set(seen[0]) | set(seen[1]) == set(range(48))


def _schedule_overrides(synth, run_dir):
    # schedules that change every epoch: RT 1 -> 0.67 (epoch 1) -> 0.5 (epoch 2), lr x0.1 at epoch 2;
    # batches of 2: 24 steps an epoch, so that a kill shortly after epoch 0's checkpoint lands inside
    # epoch 1 however fast the machine
    return tiny_overrides(synth, run_dir, **{
        "optim.epochs": 3, "objective.target_ratio": 0.5, "objective.rt_begin": 1, "objective.rt_end": 2,
        "objective.t_end": 2, "optim.lr_steps": "[2]", "data.batch_size": 2})


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(synth, tmp_path):
    reference = train(load_config(SYNTHETIC_CONFIG, _schedule_overrides(synth, tmp_path / "a")))
    run = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "afnet.cli", "train", "--config", str(SYNTHETIC_CONFIG),
                             *_schedule_overrides(synth, run)], env=ENV, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)                      # into epoch 1 (24 steps)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(last)
    assert killed_at["epoch"] < 2, "the run finished before it could be killed"

    resumed = train(load_config(SYNTHETIC_CONFIG, _schedule_overrides(synth, run) + ["resume=last"]))
    a, b = read_checkpoint(reference.last_checkpoint), read_checkpoint(resumed.last_checkpoint)
    assert (b["epoch"], b["step"], b["global_step"]) == (a["epoch"], a["step"], a["global_step"])
    assert a["step"] == 72                       # 3 epochs x 24 steps
    assert b["schedule"] == a["schedule"]
    assert b["schedule"]["target_ratio"] == pytest.approx(0.5)
    # same initialisation, data order, Gumbel noise and dropout per epoch: the same weights
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), key


@pytest.mark.slow
def test_two_process_ddp_run(synth, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "afnet.cli", "train", "--config", str(SYNTHETIC_CONFIG),
           *tiny_overrides(synth, run, **{"optim.epochs": 1, "trainer.devices": 2, "trainer.strategy": "ddp"}),
           "model.selection=uniform", "model.ratio=0.5"]
    proc = subprocess.run(cmd, env={**ENV, "OMP_NUM_THREADS": "1"}, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == 3                       # 48 videos / 2 ranks / batch 8
    assert ckpt["config"]["trainer"]["devices"] == 2
    assert len(list((run / "tensorboard").glob("events.*"))) == 1   # only rank 0 writes
    cfg = load_config(run / "config.yaml", ["trainer.devices=1", "trainer.strategy=auto"])
    metrics = evaluate(cfg, run / "checkpoints" / "best.ckpt")
    assert metrics["mean_kept_ratio"] == pytest.approx(0.5)
