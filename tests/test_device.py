"""Devices (issue #22): ``--device`` on every inference command, a one-line error for a GPU
that is not there, fixed policies that make no host tensor for a model on another device, and
``--compile`` giving the eager logits. The CUDA cases skip without a GPU."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import afnet
from afnet.cli import main
from afnet.errors import OptionError
from afnet.inference import load_model_for_inference, predict_video
from afnet.runtime import resolve_device, timed
from tests.helpers import randomize, write_video

T, K = 8, 4
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """af_resnet_small (T=8, K=4), random weights, read at 32 pixels."""
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    model = randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T, shift=True), seed=1)
    afnet.save_checkpoint(path, model, config={"data": {"preset": "synthetic", "input_size": 32}})
    return str(path)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return str(write_video(tmp_path_factory.mktemp("video") / "a.mp4", 24))


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ----------------------------------------------------------------------------- resolve_device
def test_resolve_device(no_gpu):
    assert resolve_device("cpu") == resolve_device("CPU") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "mps") and resolve_device(None) == resolve_device("auto")
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(OptionError, match=f"^device {spec}: .*use device cpu or auto$") as exc:
            resolve_device(spec)
        assert "\n" not in str(exc.value)
    with pytest.raises(OptionError, match="not a device; accepted: cpu, cuda, cuda:N, mps or auto"):
        resolve_device("gpu0")


def test_timed_returns_the_result_and_milliseconds():
    result, ms = timed(torch.add, torch.ones(2), 1, device="cpu")
    assert torch.equal(result, torch.full((2,), 2.0)) and ms >= 0


# ----------------------------------------------------------------------------- every command
def _cmd(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("command", ["predict", "timeline", "explain", "serve", "export"])
def test_cuda_without_a_gpu_is_a_one_line_error(capsys, no_gpu, ckpt, video, tmp_path, command):
    argv = {"predict": [video], "timeline": [video, "--out", tmp_path / "t.png", "--window", 1, "--stride", 1],
            "explain": [video, "--out", tmp_path / "e.png"], "serve": [],
            "export": ["--out", tmp_path / "m.onnx"]}[command]
    rc, out, err = _cmd(capsys, command, *argv, "--checkpoint", ckpt, "--device", "cuda")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"afnet {command}: error: --device cuda: ")
    assert "use --device cpu or auto" in err and "Traceback" not in err


def test_device_cpu_everywhere(capsys, ckpt, video, tmp_path):
    rc, out, _ = _cmd(capsys, "predict", video, "--checkpoint", ckpt, "--device", "cpu", "--json")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and row["ok"] and row["device"] == "cpu" and row["compile"] is None

    rc, out, _ = _cmd(capsys, "timeline", video, "--checkpoint", ckpt, "--device", "cpu", "--json",
                      "--out", tmp_path / "t.png", "--window", 0.5, "--stride", 0.5)
    windows = json.loads(out)["windows"]
    assert rc == 0 and windows and all(w["device"] == "cpu" for w in windows)

    rc, out, _ = _cmd(capsys, "explain", video, "--checkpoint", ckpt, "--device", "cpu", "--out", tmp_path / "e.png")
    assert rc == 0 and (tmp_path / "e.png").exists()

    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    rc, out, _ = _cmd(capsys, "export", "--checkpoint", ckpt, "--ratio", 0.5, "--device", "cpu",
                      "--out", tmp_path / "m.onnx")
    assert rc == 0 and "checked in ONNX Runtime" in out


def test_serve_and_batch_predict_parse_device_and_compile(ckpt):
    from afnet.cli import build_parser

    serve = build_parser().parse_args(["serve", "--checkpoint", ckpt, "--device", "cpu", "--compile"])
    assert serve.device == "cpu" and serve.compile == "default"
    batch = build_parser().parse_args(["batch-predict", "x", "--out", "o.jsonl", "--checkpoint", ckpt,
                                       "--compile", "reduce-overhead"])
    assert batch.compile == "reduce-overhead" and not hasattr(batch, "device")   # its device: --accelerator


# ----------------------------------------------------------------------------- no host tensor
class HostTensors(TorchDispatchMode):
    """Records every operator that returns a tensor on the CPU."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in tree_flatten(out)[0]):
            self.ops.append(str(func))
        return out


SPATIAL = dict(spatial=True, region_grid=2, temporal_navigation="block")
FIXED = {   # policies that fix every count: sparse execution reads nothing back
    "static-k": dict(ratio=0.5),
    "uniform": dict(selection="uniform", ratio=0.5),
    "random": dict(selection="random", ratio=0.5),
    "spatial centre": dict(ratio=0.5, **SPATIAL, region_selection="center", region_ratio=0.5),
    "spatial random": dict(ratio=0.5, **SPATIAL, region_selection="random", region_ratio=0.5),
    "spatial static-k": dict(ratio=0.5, **SPATIAL, region_selection="navigation", region_ratio=0.5),
}
BUILT_ON_DEVICE = ("static-k", "uniform", "spatial centre", "spatial static-k")   # no host work even once


@pytest.mark.parametrize("case", list(FIXED))
def test_fixed_policies_make_no_host_tensor_for_a_model_elsewhere(case):
    """A model on another device (``meta`` here: shapes only, checkable on any CPU) whose policy
    fixes the counts runs without a single tensor on the host: nothing is built on the CPU and
    copied over (on a GPU, a host sync). The drawn policies draw on the host once per shape and
    stream (the same frames on every device), then reuse the mask kept on the device."""
    model = afnet.create_model("af_resnet_small", num_classes=5, num_frames=8, shift=True, execution="sparse",
                               **FIXED[case]).to("meta").eval()
    video = torch.empty(2, 8, 3, 64, 64, device="meta")
    assert model.fixed_counts().complete
    with torch.no_grad():
        with HostTensors() as first:
            model(video)
        with HostTensors() as second:
            model(video)
    assert second.ops == []
    if case in BUILT_ON_DEVICE:
        assert first.ops == []


@pytest.mark.parametrize("case", ["uniform", "random", "spatial centre", "spatial random"])
def test_fixed_masks_are_reused_but_not_shared(case):
    """The kept masks are handed out as copies: changing one output leaves the next call's alone."""
    model = randomize(afnet.create_model("af_resnet_small", num_classes=5, num_frames=8, shift=True,
                                         **FIXED[case])).eval()
    video = torch.randn(2, 8, 3, 32, 32)
    with torch.no_grad():
        first = model(video)
        expected = [m.clone() for m in first.masks + first.regions]
        for m in first.masks + first.regions:
            m.zero_()
        again = model(video)
    assert all(torch.equal(a, b) for a, b in zip(expected, again.masks + again.regions))


@cuda
@pytest.mark.parametrize("case", list(FIXED))
def test_cuda_masks_equal_the_cpu_masks(case):
    model = randomize(afnet.create_model("af_resnet_small", num_classes=5, num_frames=8, shift=True,
                                         execution="sparse", **FIXED[case])).eval()
    video = torch.randn(2, 8, 3, 64, 64)
    with torch.no_grad():
        ref = model(video)
        got = model.cuda()(video.cuda())
    for a, b in zip(ref.masks + ref.regions, got.masks + got.regions):
        assert torch.equal(a, b.cpu())


# ----------------------------------------------------------------------------- compile
@pytest.mark.slow
def test_compiled_forward_gives_the_eager_logits(ckpt, video):
    """``--compile`` (default mode, static-k): the same frames, logits to float tolerance (about a
    minute of compiling on a CPU)."""
    eager = predict_video(video, load_model_for_inference(ckpt, ratio=0.5))
    compiled_im = load_model_for_inference(ckpt, ratio=0.5, compile="default")
    compiled = predict_video(video, compiled_im)
    assert compiled.compile == "default" and compiled.masks == eager.masks
    assert [c for c, _, _ in compiled.top] == [c for c, _, _ in eager.top]
    torch.testing.assert_close(compiled.probs, eager.probs, rtol=1e-4, atol=1e-6)


def test_compile_is_refused_for_onnx_and_unknown_modes(capsys, ckpt, video):
    rc, _, err = _cmd(capsys, "predict", video, "--onnx", "m.onnx", "--compile")
    assert rc == 2 and "--compile is for --checkpoint" in err
    with pytest.raises(OptionError, match="accepted: default, reduce-overhead"):
        load_model_for_inference(ckpt, compile="fastest")


@cuda
def test_predict_on_cuda_equals_cpu(ckpt, video):
    from afnet.runtime import full_fp32

    full_fp32()
    cpu = predict_video(video, load_model_for_inference(ckpt, device="cpu"))
    gpu = predict_video(video, load_model_for_inference(ckpt, device="cuda"))
    assert gpu.device.startswith("cuda") and gpu.masks == cpu.masks
    assert [c for c, _, _ in gpu.top] == [c for c, _, _ in cpu.top]
    torch.testing.assert_close(gpu.probs, cpu.probs, rtol=1e-4, atol=1e-5)
