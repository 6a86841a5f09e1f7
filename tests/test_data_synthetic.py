import argparse
import hashlib

import av
import numpy as np

from afnet.data.cli import register
from afnet.data.synthetic import CLASSES, make_synthetic, render_video


def digest_frames(root):
    h = hashlib.sha256()
    for path in sorted((root / "frames").rglob("*.jpg")):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def decoded_pixels(path):
    """The decoded YUV planes, before any colour conversion: swscale's yuv->rgb step was
    seen to vary in the last pixels of a 32x32 frame within a long test process (it
    appears to read uninitialised memory), which says nothing about the file."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="yuv420p") for f in c.decode(video=0)])


def test_deterministic_for_a_seed(tmp_path):
    kw = dict(num_train=6, num_val=2, num_classes=6, num_frames=8, size=32)
    a = make_synthetic(tmp_path / "a", seed=11, **kw)
    b = make_synthetic(tmp_path / "b", seed=11, **kw)
    c = make_synthetic(tmp_path / "c", seed=12, **kw)
    assert digest_frames(a.root) == digest_frames(b.root) != digest_frames(c.root)
    for i in range(6):
        rel = f"videos/train/video_{i:05d}.mp4"
        assert np.array_equal(decoded_pixels(a.root / rel), decoded_pixels(b.root / rel))
    assert a.frame_lists["train"].read_text() == b.frame_lists["train"].read_text()
    labels = [int(line.split()[-1]) for line in a.frame_lists["train"].read_text().splitlines()]
    assert sorted(set(labels)) == list(range(6))
    assert (a.root / "category.txt").read_text().splitlines() == list(CLASSES[:6])


def test_no_class_identifiable_from_one_frame_statistics():
    """Per-frame mean colour has the same distribution in paired classes."""
    def mean_colour(label):
        vids = [render_video(label, np.random.default_rng(k), size=32, num_frames=16)
                for k in range(40)]
        return np.mean([v.reshape(16, -1, 3).mean(1) for v in vids], axis=(0, 1))

    for a, b in [(0, 1), (2, 3), (4, 5), (6, 7)]:
        assert np.abs(mean_colour(a) - mean_colour(b)).max() < 3.0
    # and the pairs differ over time: the order of frames carries the label. The flash frame
    # of a colour: most pixels that turned that colour against the (static) median frame.
    def flash_frames(video):
        change = video.astype(float) - np.median(video.astype(float), axis=0)
        redder = ((change[..., 0] - change[..., 2]) > 100).reshape(len(video), -1).sum(1)
        bluer = ((change[..., 2] - change[..., 0]) > 100).reshape(len(video), -1).sum(1)
        return int(np.argmax(redder)), int(np.argmax(bluer))

    for seed in range(5):
        red_at, blue_at = flash_frames(render_video(2, np.random.default_rng(seed), size=32, num_frames=16))
        assert red_at < blue_at, (seed, CLASSES[2])
        red_at, blue_at = flash_frames(render_video(3, np.random.default_rng(seed), size=32, num_frames=16))
        assert blue_at < red_at, (seed, CLASSES[3])


def test_make_synthetic_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["make-synthetic", str(tmp_path / "s"), "--num-train", "4",
                              "--num-val", "2", "--num-classes", "2", "--frames", "8",
                              "--size", "32", "--no-videos"])
    assert args.func(args) == 0
    assert (tmp_path / "s" / "train_frames.txt").read_text().count("\n") == 4
    assert not (tmp_path / "s" / "videos").exists()
    args = parser.parse_args(["make-synthetic", str(tmp_path / "t"), "--num-classes", "9"])
    assert args.func(args) == 2 and "num_classes=9; accepted: 2..8" in capsys.readouterr().err
