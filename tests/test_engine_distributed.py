"""Exact resume after SIGKILL, per-rank sharding, and a 2-process DDP run (gloo, CPU)."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
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


@pytest.mark.parametrize("size, world, shuffle", [(15, 2, False), (15, 4, True), (3, 4, False), (16, 2, True)])
def test_padding_is_each_ranks_repeats_and_nothing_else(size, world, shuffle):
    from afnet.data.dataset import EpochSampler

    counted = []
    for rank in range(world):
        sampler = EpochSampler(size, shuffle=shuffle, seed=3, epoch=2, num_replicas=world, rank=rank)
        keys = [k.index for k in sampler]
        padding = sampler.padding()
        assert len(keys) == len(sampler) and padding <= set(keys)
        counted += [i for i in keys if i not in padding]
    assert sorted(counted) == list(range(size))          # each sample once over the ranks, repeats left out


def _metrics_of(cfg, checkpoint) -> dict:
    return evaluate(cfg, checkpoint, out_dir=Path(checkpoint).parent.parent / f"eval_{Path(checkpoint).stem}")


@pytest.mark.slow
def test_two_process_validation_is_global_and_picks_the_global_best(tmp_path):
    """15 validation videos over 2 ranks (8 and 7, one repeat to pad): the metrics each epoch
    logs, and best.ckpt's choice, are those of the whole validation set, not rank 0's shard."""
    synth = tiny_synthetic(tmp_path, num_train=16, num_val=15)
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "afnet.cli", "train", "--config", str(SYNTHETIC_CONFIG),
           *tiny_overrides(synth, run, **{"optim.epochs": 3, "trainer.devices": 2, "trainer.strategy": "ddp",
                                          "data.val_batch_size": 4, "optim.lr": 0.05}),
           "model.selection=uniform", "model.ratio=0.5"]   # no ratio schedule: every epoch may be the best
    proc = subprocess.run(cmd, env={**ENV, "OMP_NUM_THREADS": "1"}, cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sync_dist=True" not in proc.stderr
    cfg = load_config(run / "config.yaml", ["trainer.devices=1", "trainer.strategy=auto"])
    best, last = (read_checkpoint(run / "checkpoints" / name) for name in ("best.ckpt", "last.ckpt"))
    whole = {name: _metrics_of(cfg, run / "checkpoints" / name) for name in ("best.ckpt", "last.ckpt")}
    for ckpt, name in ((best, "best.ckpt"), (last, "last.ckpt")):
        for key in ("top1", "top5", "class_mean_acc", "mean_kept_ratio"):
            assert ckpt["metrics"][key] == pytest.approx(whole[name][key], abs=1e-6), (name, key)
    assert whole["best.ckpt"]["top1"] >= whole["last.ckpt"]["top1"]
    # best.ckpt is the first epoch with the highest top-1 that train.log records (the logged, global values)
    logged = [float(re.search(r"val top-1 ([0-9.]+)%", line).group(1)) / 100
              for line in (run / "train.log").read_text().splitlines() if "val top-1" in line]
    assert len(logged) == 3 and best["epoch"] == logged.index(max(logged))
    assert logged[best["epoch"]] == pytest.approx(whole["best.ckpt"]["top1"], abs=5e-4)
    assert logged[last["epoch"]] == pytest.approx(whole["last.ckpt"]["top1"], abs=5e-4)
    # the shards disagree: rank 0's half alone (videos 0, 2, ..., 14) scores otherwise than the whole set
    lines = (synth / "val_frames.txt").read_text().splitlines()
    (tmp_path / "rank0.txt").write_text("\n".join(lines[0::2]) + "\n")
    shard = load_config(run / "config.yaml", ["trainer.devices=1", "trainer.strategy=auto",
                                              f"data.val_list={tmp_path / 'rank0.txt'}"])
    rank0 = evaluate(shard, run / "checkpoints" / "last.ckpt", out_dir=tmp_path / "eval_rank0")
    assert (rank0["top1"], rank0["mean_kept_ratio"]) != (whole["last.ckpt"]["top1"],
                                                         whole["last.ckpt"]["mean_kept_ratio"])
