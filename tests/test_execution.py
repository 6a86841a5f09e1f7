"""How the focal branch executes: sparse with counts read from the mask, sparse with counts
known from the policy (no host read: the GPU and ONNX path), masked; the one-pass fusion;
and what ``execution="auto"`` picks."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from afnet import create_model
from afnet.models import layers
from afnet.models.layers import KeptSizes, block_sizes, kept_index, lerp_upsampled, nearest_factors, skipped_index
from tests.helpers import randomize


class OpLog(TorchDispatchMode):
    """The aten operators a block of code dispatches."""

    def __init__(self):
        super().__init__()
        self.calls = Counter()

    @property
    def ops(self) -> set:
        return set(self.calls)

    def reads(self) -> Counter:
        return Counter({op: n for op, n in self.calls.items() if op in HOST_READS})

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[func.overloadpacket.__name__] += 1
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
        assert torch.equal(kept_index(keep, batch * k, k), expected)     # the policy's count: topk
        assert torch.equal(kept_index(keep, batch * k), expected)        # a count read: nonzero_static
        sizes = block_sizes([keep], [None])[0]
        assert sizes == KeptSizes(batch * k)
        assert torch.equal(skipped_index(keep, sizes), (keep.flatten() == 0).nonzero().flatten())
        assert torch.equal(skipped_index(keep, KeptSizes(batch * k, k)), skipped_index(keep, sizes))


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
    assert model.fixed_counts().complete
    with torch.no_grad():
        sparse = model.configure(execution="sparse")(video)
        masked = model.configure(execution="masked")(video)
    for a, b in zip(sparse.masks, masked.masks):
        assert torch.equal(a, b)
        assert (a.sum(dim=1) == 3).all()
    torch.testing.assert_close(sparse.logits, masked.logits, rtol=1e-4, atol=1e-5)


def stage_count(model) -> int:
    return sum(isinstance(m, layers.AFStage) for m in model.modules())


@pytest.mark.parametrize("case", ["threshold", "static-k", "uniform", "spatial learned", "spatial fixed",
                                  "given"])
def test_sparse_reads_counts_once_per_stage_or_never(monkeypatch, case):
    """Sparse execution sizes its gathers without ``nonzero``: counts the policy fixes are
    computed (no read at all: on a GPU, no host sync), the others are read from the masks in
    one copy per AF stage (its ample branch makes every decision of the stage first), not
    one per focal block. Logits equal masked execution's either way."""
    reads = []
    real = layers.read_counts
    monkeypatch.setattr(layers.sizes, "read_counts", lambda counts: (reads.append(len(counts)) if counts else None)
                        or real(counts))
    spatial = case.startswith("spatial")
    kwargs = dict(spatial=True, region_grid=2, temporal_navigation="block",
                  region_selection="navigation" if case == "spatial learned" else "center",
                  region_ratio=None if case == "spatial learned" else 0.5) if spatial else {}
    selection = {"uniform": "uniform"}.get(case, "navigation")
    ratio = 0.5 if case in ("static-k", "uniform", "spatial fixed") else None
    model = randomize(create_model("af_resnet_small", num_classes=5, num_frames=8, shift=True, selection=selection,
                                   ratio=ratio, **kwargs)).eval()
    video = torch.randn(2, 8, 3, 64, 64)
    given = torch.tensor([[1, 0, 1, 1, 0, 0, 1, 0], [0, 0, 1, 0, 1, 1, 1, 1]]) if case == "given" else None
    with torch.no_grad():
        masked = model.configure(execution="masked")(video, keep=given)
        model.configure(execution="sparse")(video, keep=given)  # fills the skipped-frame caches
        reads.clear()
        with OpLog() as log:
            sparse = model(video, keep=given)
    assert "index_select" in log.ops                    # it did gather the kept frames
    expected = Counter()
    if given is not None:  # the one read: forward's check that the given mask is 0/1
        with OpLog() as check:
            model.check_keep(given, 2, 8)
        expected = check.reads()
    assert log.reads() == expected
    blocks = [len(s.focal) for s in model.modules() if isinstance(s, layers.AFStage)]
    if case in ("static-k", "uniform", "spatial fixed"):
        assert model.fixed_counts().complete and reads == []
    else:  # one read per stage: a count per block (and its regions')
        assert not model.fixed_counts(given is not None).complete
        assert reads == [n * (2 if case == "spatial learned" else 1) for n in blocks]
    assert len(blocks) == stage_count(model) == 3
    for a, b in zip(sparse.masks + sparse.regions, masked.masks + masked.regions):
        assert torch.equal(a, b)
    torch.testing.assert_close(sparse.logits, masked.logits, rtol=1e-4, atol=1e-5)


def test_single_branch_ablation_reads_each_point():
    """NavResNet decides each block from the previous block's output: one read per point."""
    reads = []
    model = randomize(create_model("nav_resnet_small", num_classes=5, num_frames=8, execution="sparse")).eval()
    real = layers.read_counts
    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(layers.sizes, "read_counts", lambda counts: reads.append(len(counts)) or real(counts))
        out = model(torch.randn(2, 8, 3, 64, 64))
    assert reads == [1] * len(out.masks)


CUDA_CASES = {
    "static-k": dict(ratio=0.5),
    "uniform": dict(selection="uniform", ratio=0.5),
    "spatial fixed": dict(ratio=0.5, spatial=True, region_grid=2, temporal_navigation="block",
                          region_selection="center", region_ratio=0.5),
    "spatial static-k": dict(ratio=0.5, spatial=True, region_grid=2, temporal_navigation="block",
                             region_selection="navigation", region_ratio=0.5),
    "threshold": {},
    "spatial learned": dict(spatial=True, region_grid=2, temporal_navigation="block"),
}


def cuda_syncs(model, video) -> int:
    """Host syncs of one forward pass, counted by CUDA's sync debug mode (its warnings)."""
    import warnings
    with torch.no_grad():
        model(video)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = model(video)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert out.logits.shape == (2, 5)
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", list(CUDA_CASES))
def test_cuda_sparse_syncs_once_per_stage_or_never(case):
    """On a GPU: no host sync where the policy fixes the counts, one per AF stage where the
    counts are read from the masks."""
    model = create_model("af_resnet_small", num_classes=5, num_frames=8, shift=True, execution="sparse",
                         **CUDA_CASES[case]).cuda().eval()
    video = torch.randn(2, 8, 3, 64, 64, device="cuda")
    if model.fixed_counts().complete:
        with torch.no_grad():
            model(video)  # warm-up: the skipped-frame caches
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # any sync raises
        try:
            with torch.no_grad():
                model(video)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    else:
        assert cuda_syncs(model, video) == stage_count(model)


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
    assert model.fixed_counts().complete and model.resolved_execution(1, "cuda") == "sparse"
    assert model.configure(execution="masked").resolved_execution(1, "cpu") == "masked"
    assert model.configure(execution="sparse").resolved_execution(1, "cuda") == "sparse"
    assert model.configure(selection="soft", execution="auto").resolved_execution(1, "cpu") == "masked"
    assert model.train().resolved_execution(1, "cpu") == "masked"
    spatial = create_model("af_resnet_small", num_classes=5, num_frames=8, spatial=True, region_grid=2,
                           ratio=0.5, region_selection="navigation").eval()
    assert not spatial.fixed_counts().complete and spatial.resolved_execution(1, "cuda") == "masked"
    spatial.configure(region_selection="center", region_ratio=0.5)  # counts fixed, but region-sparse
    assert spatial.fixed_counts().complete and spatial.resolved_execution(1, "cuda") == "masked"
    assert spatial.resolved_execution(32, "cuda") == spatial.resolved_execution(1, "cpu") == "sparse"
    assert spatial.configure(region_selection="all").resolved_execution(1, "cuda") == "sparse"


def test_static_k_regions_keep_the_top_margins_and_run_without_reads(monkeypatch):
    """Learned region navigation with a region_ratio, in eval: exactly round(RS * g^2) regions
    per kept frame, those with the largest keep-minus-skip margin; the counts are known, so
    sparse execution reads nothing, and it equals masked execution. Training still samples."""
    model = randomize(create_model("af_resnet_small", num_classes=5, num_frames=8, spatial=True, region_grid=2,
                                   ratio=0.5, region_selection="navigation", region_ratio=0.5)).eval()
    assert model.fixed_counts().complete
    video = torch.randn(2, 8, 3, 64, 64)
    logits = []
    for spatial in (m for m in model.modules() if isinstance(m, layers.SpatialNavigation)):
        spatial.register_forward_hook(lambda m, i, out: logits.append(out.detach()))
    reads = []
    real = layers.read_counts
    monkeypatch.setattr(layers.sizes, "read_counts", lambda c: (reads.append(len(c)) if c else None) or real(c))
    with torch.no_grad():
        sparse = model.configure(execution="sparse")(video)
        masked = model.configure(execution="masked")(video)
    assert reads == []
    margins = [q[..., 1] - q[..., 0] for q in logits[:len(sparse.regions)]]
    for regions, margin in zip(sparse.regions, margins):
        regions = regions.flatten(2).flatten(0, 1)            # (B*T, g*g)
        assert (regions.sum(dim=1) == 2).all()                 # round(0.5 * 4)
        chosen = margin.flatten(1).gather(1, regions.argsort(dim=1, descending=True, stable=True)[:, :2])
        dropped = margin.flatten(1).gather(1, regions.argsort(dim=1, stable=True)[:, :2])
        assert (chosen.min(dim=1).values >= dropped.max(dim=1).values).all()
    for a, b in zip(sparse.masks + sparse.regions, masked.masks + masked.regions):
        assert torch.equal(a, b)
    torch.testing.assert_close(sparse.logits, masked.logits, rtol=1e-4, atol=1e-5)
    sampled = []
    real_gumbel = layers.gumbel_keep
    monkeypatch.setattr(layers.selection, "gumbel_keep", lambda q, *a: sampled.append(q.shape) or real_gumbel(q, *a))
    model.configure(execution="auto").train()(video)
    assert sum(len(shape) == 4 for shape in sampled) == len(sparse.regions)  # every region point sampled
