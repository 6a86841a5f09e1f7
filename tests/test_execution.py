"""How the focal branch executes: sparse with counts read from the mask, sparse with counts
known from the policy (no host read: the GPU and ONNX path), masked; the one-pass fusion;
and what ``execution="auto"`` picks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from afnet import create_model
from afnet.models.layers import kept_index, lerp_upsampled, nearest_factors
from conftest import randomize


class OpLog(TorchDispatchMode):
    """The aten operators a block of code dispatches."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


# Operators that read a tensor's values back to the host: on a GPU each one waits for the device.
HOST_READS = {"nonzero", "_local_scalar_dense", "item", "is_nonzero"}


@pytest.mark.parametrize("batch,frames,k", [(1, 12, 5), (3, 8, 1), (2, 8, 8), (4, 6, 3)])
def test_kept_index_from_the_count_equals_nonzero(batch, frames, k):
    g = torch.Generator().manual_seed(batch * 100 + k)
    for _ in range(5):
        idx = torch.rand(batch, frames, generator=g).argsort(dim=1)[:, :k]
        keep = torch.zeros(batch, frames).scatter_(1, idx, 1.0)
        expected = keep.flatten().nonzero().flatten()
        assert torch.equal(kept_index(keep, k), expected)
        assert torch.equal(kept_index(keep), expected)


@pytest.mark.parametrize("name", ["af_resnet_small", "af_mobilenetv3", "nav_resnet_small"])
@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("selection", ["navigation", "uniform", "random"])
def test_static_count_sparse_equals_masked(name, shift, channels_last, selection):
    """Static-k (learned navigation with a ratio) and the fixed policies run sparse from
    the policy's count: same masks and logits as masked execution."""
    torch.manual_seed(0)
    model = randomize(create_model(name, num_classes=5, num_frames=8, shift=shift, selection=selection,
                                   ratio=0.375)).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    video = torch.randn(3, 8, 3, 64, 64)
    assert model.static_counts()
    with torch.no_grad():
        sparse = model.configure(execution="sparse")(video)
        masked = model.configure(execution="masked")(video)
    for a, b in zip(sparse.masks, masked.masks):
        assert torch.equal(a, b)
        assert (a.sum(dim=1) == 3).all()
    torch.testing.assert_close(sparse.logits, masked.logits, rtol=1e-4, atol=1e-5)


def test_static_count_sparse_reads_nothing_back_and_the_threshold_does():
    """With counts from the policy the sparse forward never reads a value to the host (no
    ``nonzero``, no ``item``): on a GPU it runs without syncs. The learned threshold has to
    read each block's count."""
    model = randomize(create_model("af_resnet_small", num_classes=5, num_frames=8, shift=True, ratio=0.5,
                                   execution="sparse")).eval()
    video = torch.randn(2, 8, 3, 64, 64)
    with torch.no_grad():
        model(video)  # fills the skipped-frame caches
        with OpLog() as static:
            model(video)
        with OpLog() as threshold:
            model.configure(selection="all").configure(selection="navigation")(video)
    assert "index_select" in static.ops and "topk" in static.ops   # it did gather the kept frames
    assert not static.ops & HOST_READS, static.ops & HOST_READS
    assert "nonzero" in threshold.ops


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("selection", ["navigation", "uniform"])
def test_cuda_static_count_sparse_has_no_host_sync(selection):
    model = create_model("af_resnet_small", num_classes=5, num_frames=8, shift=True, selection=selection,
                         ratio=0.5, execution="sparse").cuda().eval()
    video = torch.randn(2, 8, 3, 64, 64, device="cuda")
    with torch.no_grad():
        model(video)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = model(video)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert out.logits.shape == (2, 5)


@pytest.mark.parametrize("small,big", [((7, 7), (14, 14)), ((4, 6), (8, 6)), ((5, 5), (5, 5)), ((3, 2), (12, 8))])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fusion_in_one_pass_equals_upsample_then_mix(small, big, channels_last):
    g = torch.Generator().manual_seed(0)
    focal, ample = torch.randn(4, 16, *big, generator=g), torch.randn(4, 16, *small, generator=g)
    theta = torch.rand(4, 16, 1, 1, generator=g)
    if channels_last:
        focal, ample = (t.contiguous(memory_format=torch.channels_last) for t in (focal, ample))
    up = F.interpolate(ample, size=big, mode="nearest")
    expected = torch.addcmul(focal, theta, up - focal)
    out = lerp_upsampled(focal, ample, theta, nearest_factors(small, big))
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last or min(big) == 1
    # the gate's pooled input: a whole-factor nearest upsampling keeps the mean
    torch.testing.assert_close(F.adaptive_avg_pool2d(ample, 1), F.adaptive_avg_pool2d(up, 1))


def test_fusion_is_a_mix_of_the_branches_with_gradients():
    focal = torch.randn(2, 8, 4, 4, requires_grad=True)
    ample = torch.randn(2, 8, 2, 2, requires_grad=True)
    theta = torch.rand(2, 8, 1, 1, requires_grad=True)
    out = lerp_upsampled(focal, ample, theta, (2, 2))
    out.sum().backward()
    torch.testing.assert_close(focal.grad, (1 - theta).expand_as(focal).detach())
    torch.testing.assert_close(ample.grad, 4 * theta.expand_as(ample).detach())  # each pixel used 2x2 times
    assert nearest_factors((3, 3), (7, 7)) is None


def test_auto_execution_by_device_batch_and_policy():
    model = create_model("af_resnet_small", num_classes=5, num_frames=8).eval()
    assert model.resolved_execution(1, "cpu") == "sparse"          # learned threshold, CPU
    assert model.resolved_execution(1, "cuda") == "masked"         # a sync per block would cost more
    assert model.resolved_execution(32, "cuda") == "sparse"
    assert model.resolved_execution(1, "cuda", given=True) == "masked"
    model.configure(ratio=0.5)                                      # static-k: counts known
    assert model.static_counts() and model.resolved_execution(1, "cuda") == "sparse"
    assert model.configure(execution="masked").resolved_execution(1, "cpu") == "masked"
    assert model.configure(execution="sparse").resolved_execution(1, "cuda") == "sparse"
    assert model.configure(selection="soft", execution="auto").resolved_execution(1, "cpu") == "masked"
    assert model.train().resolved_execution(1, "cpu") == "masked"
    spatial = create_model("af_resnet_small", num_classes=5, num_frames=8, spatial=True, region_grid=2,
                           ratio=0.5, region_selection="navigation").eval()
    assert not spatial.static_counts() and spatial.resolved_execution(1, "cuda") == "masked"
