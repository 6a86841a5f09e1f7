"""Writers that fail safely (afnet/io.py): atomic files, whole-line appends, and a full disk
(RLIMIT_FSIZE in a subprocess: EFBIG, as ENOSPC) during ``batch-predict`` and ``train``: one line
naming the file, exit 1, earlier files intact, and the same command resumes once there is room."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap

import pytest
import torch

import afnet
from afnet.checkpoint import read_checkpoint
from afnet.io import DiskFull, atomic_write, no_room, torch_save, write_text
from tests.helpers import REPO, SYNTHETIC_CONFIG, randomize, tiny_overrides, tiny_synthetic, write_video

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _limited(size: int):
    """A preexec_fn giving the child a file size limit of ``size`` bytes (its own, not ours)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return limit


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("boom")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["out.txt"]
    torch_save({"x": torch.arange(3)}, tmp_path / "t.pt")
    assert torch.equal(torch.load(tmp_path / "t.pt")["x"], torch.arange(3))


def test_no_room_is_a_one_line_error_and_appends_stay_whole(tmp_path):
    """In a child whose file size limit is 100 bytes: an append past it is cut back to the last
    complete line, an atomic write past it leaves the old file and no temporary file."""
    script = textwrap.dedent(f"""
        import resource, sys
        from afnet.io import DiskFull, append_lines, ignore_file_size_signal, write_bytes
        ignore_file_size_signal()
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        with open({str(tmp_path / 'log.jsonl')!r}, "ab") as f:
            append_lines(f, ["a" * 40, "b" * 40])
            try:
                append_lines(f, ["c" * 40])
            except DiskFull as exc:
                print(exc)
        try:
            write_bytes({str(tmp_path / 'model.bin')!r}, b"x" * 1000)
        except DiskFull as exc:
            print(exc)
    """)
    (tmp_path / "model.bin").write_bytes(b"old model")
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"cannot write {tmp_path / 'log.jsonl'}: file too large for the file size limit")
    assert lines[1].startswith(f"cannot write {tmp_path / 'model.bin'}: ") and "run the same command again" in lines[1]
    assert (tmp_path / "log.jsonl").read_text() == "a" * 40 + "\n" + "b" * 40 + "\n"
    assert (tmp_path / "model.bin").read_bytes() == b"old model"
    assert sorted(os.listdir(tmp_path)) == ["log.jsonl", "model.bin"]


def test_no_room_is_recognised_through_wrapping():
    import errno

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("writer failed") from inner
    except RuntimeError as exc:
        assert no_room(exc)
    assert not no_room(ValueError("x")) and issubclass(DiskFull, OSError)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    model = randomize(afnet.create_model("af_resnet_small", num_classes=4, num_frames=8), seed=1)
    afnet.save_checkpoint(path, model, config={"data": {"preset": "synthetic", "input_size": 32}})
    return str(path)


@pytest.mark.slow
def test_batch_predict_on_a_full_disk_stops_then_resumes(tmp_path, ckpt):
    videos = [write_video(tmp_path / f"v{i}.mp4", 10, size=(32, 32)) for i in range(6)]
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "afnet.cli", "batch-predict", *videos, "--checkpoint", ckpt, "--out", str(out),
           "--workers", "0", "--batch-size", "1", "--no-flops", "--threads", "1", "--accelerator", "cpu"]
    line = len(json.dumps({"path": videos[0]})) + 600   # a line is about 1 KB: room for a few, not six
    full = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300,
                          preexec_fn=_limited(3 * line))
    shard = tmp_path / "out.jsonl.shard-0.jsonl"
    assert full.returncode == 1, full.stderr[-3000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith(f"afnet batch-predict: error: cannot write {shard}: file too large"), full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    kept = shard.read_text()
    assert kept.endswith("\n") and 0 < len(kept.splitlines()) < 6
    assert all(json.loads(row)["ok"] for row in kept.splitlines())          # every line complete
    resumed = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = [json.loads(row) for row in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == videos and all(r["ok"] for r in rows)
    assert not shard.exists()


@pytest.mark.slow
def test_train_on_a_full_disk_keeps_the_last_checkpoint_and_resumes(tmp_path):
    synth = tiny_synthetic(tmp_path, num_train=16, num_val=8)
    run = tmp_path / "run"

    def train(epochs: int, *extra, limit=None):
        cmd = [sys.executable, "-m", "afnet.cli", "train", "--config", str(SYNTHETIC_CONFIG),
               *tiny_overrides(synth, run, **{"optim.epochs": epochs}), *extra]
        return subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=600,
                              preexec_fn=None if limit is None else _limited(limit))

    first = train(1)
    assert first.returncode == 0, first.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    assert read_checkpoint(last)["epoch"] == 0
    # room for the logs, not for a checkpoint (a few MB): the disk fills at epoch 1's save
    full = train(2, "resume=last", limit=len(before) // 2)
    assert full.returncode == 1, full.stderr[-3000:]
    message = full.stderr.strip().splitlines()[-1]
    assert message.startswith("afnet train: error: cannot write ") and ".ckpt: file too large" in message, \
        full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    assert last.read_bytes() == before                            # the previous checkpoint, intact
    assert not [p for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]
    resumed = train(2, "resume=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_checkpoint(last)["epoch"] == 1
