"""Wall-clock benchmark of the model zoo on this CPU; prints Markdown tables.

Everything is measured side by side in one run (configurations interleaved round-robin,
medians compared), because these machines are noisy:

1. Sparse vs masked execution of AF-ResNet50-TSM (12 frames, 224) at ratios 1.0 ... 0.25,
   each latency ratio set against its FLOPs ratio, at batch 1 and batch 8.
2. "More is less" in wall-clock: AF-ResNet50-TSM, 12 frames at ratio 0.4, against
   TSM-ResNet50 with 8 frames (sparse, and the authors' masked execution).
3. Spatial navigation (paper §3.3): AF-ResNet50 with region-sparse focal blocks, 12 frames,
   RT 0.8, at region ratios RS 1.0, 0.6 and 0.4 (random regions), sparse vs masked,
   latency ratio against FLOPs ratio.
4. What each CPU inference step gives (channels-last, BN folding, allocator, bf16).
5. bf16 autocast: its effect on logits and on frame choices.
6. (``--sections prep``) the preparation steps in combination, on any device.
7. (``--sections sync``) how the sparse gather is sized, at ratio 0.4: from the policy's
   count (static: nothing read back from the device), read from the masks (one host sync
   per AF stage on a GPU), masked; on a GPU also a host sync forced before every focal block
   (what reading each block's count cost before) and the static-k model replayed from a
   CUDA graph (its launches recorded once).
8. (``--sections stages``) where the time goes: AF-ResNet50-TSM 12f r=0.4 against
   TSM-ResNet50 8f per stage, ms against GFLOPs.
9. (``--sections compile``) more is less under ``torch.compile`` (inductor; freezing on a
   CPU, also ``reduce-overhead`` on a GPU): static-k AF (one graph) against TSM.

Protocol (every table): the machine (CPU model and its speed-relevant flags, or the GPU's
name), torch version, threads; each configuration warmed up once, then timed once per round,
configurations interleaved within a round, the medians of the rounds compared (on a GPU each
call is synchronised before and after).

Usage: python benchmarks/bench_models.py [--rounds 3] [--batches 1 8] [--quick]
       [--device cuda] [--bf16] [--sections sparse more spatial steps bf16]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from afnet import count_flops, create_model
from afnet.benchmark import markdown_table, time_round_robin
from afnet.models.layers import AFStage, Navigation, fixed_policy_mask
from afnet.runtime import cpu_description, fold_batchnorm, keep_allocations, prepare_for_inference

RATIOS = (1.0, 0.75, 0.5, 0.4, 0.25)
REGION_RATIOS = (1.0, 0.6, 0.4)
SECTIONS = ("steps", "sparse", "more", "spatial", "bf16", "prep", "sync", "stages", "compile")
DEVICE = torch.device("cpu")
AF_ARCH, TSM_ARCH = "af_resnet50", "tsm_resnet50"   # --small: af_resnet_small / tsm_resnet_small (smoke runs)
BF16 = False


def prepared(model):
    """The inference preparation of afnet.runtime, on the benchmark's device and precision."""
    model = prepare_for_inference(model.to(DEVICE), bf16=BF16, tune_malloc=True)  # process-wide
    return model


def af_tsm(frames=12, ratio=0.4, classes=174):
    return create_model(AF_ARCH, num_classes=classes, num_frames=frames, shift=True,
                        selection="uniform", ratio=ratio).eval()


def video(batch, frames, size, seed=0):
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def steps_table(size, rounds):
    """Each inference step, added one at a time (batch 1, ratio 0.4, sparse)."""
    v = video(1, 12, size)
    base = af_tsm().to(DEVICE)
    eager = copy.deepcopy(base)
    cl = copy.deepcopy(base).to(memory_format=torch.channels_last)
    folded = copy.deepcopy(base)
    fold_batchnorm(folded)
    folded.to(memory_format=torch.channels_last)
    tsm = create_model(TSM_ARCH, num_classes=174, num_frames=8).eval().to(DEVICE)
    v8 = video(1, 8, size)
    before = time_round_robin({"eager": lambda: eager(v), "cl": lambda: cl(v), "folded": lambda: folded(v),
                               "tsm": lambda: tsm(v8)}, rounds=rounds)
    keep_allocations()  # process-wide from here on
    bf16 = copy.deepcopy(folded)
    bf16.autocast_dtype = torch.bfloat16
    after = time_round_robin({"folded": lambda: folded(v), "bf16": lambda: bf16(v)}, rounds=rounds)
    rows = [
        ["NCHW, eager BN", before["eager"] * 1e3, 1.0],
        ["+ channels-last", before["cl"] * 1e3, before["eager"] / before["cl"]],
        ["+ BN folded into convs", before["folded"] * 1e3, before["cl"] / before["folded"]],
        ["+ allocator keeps freed blocks (no re-mmap)", after["folded"] * 1e3, before["folded"] / after["folded"]],
        ["+ bf16 autocast", after["bf16"] * 1e3, after["folded"] / after["bf16"]],
    ]
    return markdown_table(["AF-ResNet50-TSM, 12 frames, r=0.4, batch 1", "ms/video", "gain vs previous row"], rows)


def sparse_against_masked(model, v, check=False):
    """``model`` prepared in sparse execution and a copy in masked execution, on video ``v``:
    (GFLOPs sparse, GFLOPs masked), the two callables, and with ``check`` the max abs logit
    diff between them (else None)."""
    sparse = prepared(model.configure(execution="sparse"))
    masked = copy.deepcopy(sparse).configure(execution="masked")
    gf_s, gf_m = count_flops(sparse, v), count_flops(masked, v)
    diff = None
    if check:
        with torch.inference_mode():
            diff = (sparse(v).logits - masked(v).logits).abs().max().item()
    return (gf_s, gf_m), {"sparse": lambda: sparse(v), "masked": lambda: masked(v)}, diff


def latency_columns(batch, flops, t):
    """GFLOPs sparse / masked, FLOPs ratio, ms/video sparse / masked, latency ratio and its
    gap to the FLOPs ratio: the columns both sparse-vs-masked tables share."""
    (gf_s, gf_m), flops_ratio, lat_ratio = flops, flops[0] / flops[1], t["sparse"] / t["masked"]
    return [round(gf_s, 2), round(gf_m, 2), round(flops_ratio, 3), round(t["sparse"] * 1e3 / batch, 1),
            round(t["masked"] * 1e3 / batch, 1), round(lat_ratio, 3), f"{(lat_ratio / flops_ratio - 1) * 100:+.1f}%"]


def sparse_vs_masked(batch, size, rounds):
    v = video(batch, 12, size)
    rows = []
    for ratio in RATIOS:
        flops, calls, _ = sparse_against_masked(af_tsm(ratio=ratio), v)
        rows.append([batch, ratio, *latency_columns(batch, flops, time_round_robin(calls, rounds=rounds))])
    return rows


def more_is_less(batch, size, rounds):
    v12, v8 = video(batch, 12, size), video(batch, 8, size)
    af = prepared(af_tsm(ratio=0.4).configure(execution="sparse"))
    af_masked = copy.deepcopy(af).configure(execution="masked")
    tsm = prepared(create_model(TSM_ARCH, num_classes=174, num_frames=8))
    gf = {"af": count_flops(af, v12), "masked": count_flops(af_masked, v12), "tsm": count_flops(tsm, v8)}
    t = time_round_robin({"af": lambda: af(v12), "masked": lambda: af_masked(v12), "tsm": lambda: tsm(v8)},
                         rounds=rounds)
    return [[batch, "AF-ResNet50-TSM 12f r=0.4, sparse", round(gf["af"], 2), round(gf["af"] / gf["tsm"], 3),
             round(t["af"] * 1e3 / batch, 1), round(t["af"] / t["tsm"], 3)],
            [batch, "AF-ResNet50-TSM 12f r=0.4, masked (authors')", round(gf["masked"], 2),
             round(gf["masked"] / gf["tsm"], 3), round(t["masked"] * 1e3 / batch, 1), round(t["masked"] / t["tsm"], 3)],
            [batch, "TSM-ResNet50 8f", round(gf["tsm"], 2), 1.0, round(t["tsm"] * 1e3 / batch, 1), 1.0]]


def compiled(model, v, mode=None):
    """``torch.compile(model)`` (inductor; on a CPU with freezing, its weights folded as
    constants), compiled by one call on ``v``: returns it and the seconds that took."""
    import torch._inductor.config as inductor_config
    inductor_config.freezing = DEVICE.type == "cpu"
    fn = torch.compile(model, mode=mode)
    start = time.perf_counter()
    with torch.inference_mode():
        fn(v)
    return fn, time.perf_counter() - start


COMPILE_MODES: list[str | None] | None = None   # --compile-modes; None: default, and reduce-overhead on a GPU


def more_compiled(batch, size, rounds):
    """More is less under torch.compile: AF-ResNet50-TSM 12f, static-k r=0.4 (its counts fixed:
    one graph, no breaks) sparse, eager and compiled, against TSM-ResNet50 8f eager and
    compiled; on a GPU also mode="reduce-overhead" (CUDA graphs)."""
    v12, v8 = video(batch, 12, size), video(batch, 8, size)
    af = prepared(create_model(AF_ARCH, num_classes=174, num_frames=12, shift=True, ratio=0.4,
                               execution="sparse").eval())
    tsm = prepared(create_model(TSM_ARCH, num_classes=174, num_frames=8))
    gf_af, gf_tsm = count_flops(af, v12), count_flops(tsm, v8)
    calls, compile_s = {"AF eager": lambda: af(v12), "TSM eager": lambda: tsm(v8)}, {}
    mark = torch.compiler.cudagraph_mark_step_begin   # CUDA graphs' outputs live until the next step
    modes = COMPILE_MODES or ([None, "reduce-overhead"] if DEVICE.type == "cuda" else [None])
    for mode in modes:
        suffix = "" if mode is None else f" ({mode})"
        for name, model, v in (("AF", af, v12), ("TSM", tsm, v8)):
            try:
                fn, compile_s[f"{name} compiled{suffix}"] = compiled(model, v, mode)
            except Exception as exc:  # noqa: BLE001 - report, keep the other rows
                print(f"({name} compile{suffix} failed: {type(exc).__name__}: {exc})")
                continue
            if mode == "reduce-overhead":
                calls[f"{name} compiled{suffix}"] = (lambda f=fn, x=v: (mark(), f(x))[1])
            else:
                calls[f"{name} compiled{suffix}"] = (lambda f=fn, x=v: f(x))
    with torch.inference_mode():
        diff = (calls["AF compiled"]().logits - af(v12).logits).abs().max().item() if "AF compiled" in calls else None
    t = time_round_robin(calls, rounds=rounds)
    rows = []
    for name in calls:
        af_row = name.startswith("AF")
        rows.append([batch, name, round(gf_af if af_row else gf_tsm, 2), round(t[name] * 1e3 / batch, 1),
                     round(t[name] / t["TSM eager"], 3),
                     round(t[name] / t[name.replace("AF", "TSM")], 3) if af_row and name.replace("AF", "TSM") in t
                     else "", round(compile_s[name], 1) if name in compile_s else ""])
    if diff is not None:
        print(f"(AF compiled against eager: max abs logit diff {diff:.1e})")
    return rows


def prep_steps(batch, size, rounds):
    """The inference preparation's steps in combination (any device, no allocator step):
    AF-ResNet50-TSM 12f r=0.4 sparse and TSM-ResNet50 8f, ms per video."""
    rows = []
    for name, frames in (("AF-ResNet50-TSM 12f r=0.4", 12), ("TSM-ResNet50 8f", 8)):
        base = (af_tsm() if frames == 12 else create_model(TSM_ARCH, num_classes=174, num_frames=8))
        base = base.eval().to(DEVICE)
        cl = copy.deepcopy(base).to(memory_format=torch.channels_last)
        folded = copy.deepcopy(base)
        fold_batchnorm(folded)
        folded_cl = copy.deepcopy(folded).to(memory_format=torch.channels_last)
        bf16_cl, bf16_folded_cl = copy.deepcopy(cl), copy.deepcopy(folded_cl)
        bf16_cl.autocast_dtype = bf16_folded_cl.autocast_dtype = torch.bfloat16
        models = [base, cl, folded, folded_cl, bf16_cl, bf16_folded_cl]
        v = video(batch, frames, size)
        t = time_round_robin({i: (lambda m=m: m(v)) for i, m in enumerate(models)}, rounds=rounds, warmup=3)
        rows.append([batch, name] + [round(t[i] * 1e3 / batch, 2) for i in range(len(models))])
    return rows


def spatial(batch, size, rounds, rt=0.8):
    """Region-sparse vs masked AF-ResNet50 (ActivityNet setting: 12 frames, no shift, 200
    classes, grid 7, temporal navigation at the first layer); fixed policies so that the
    ratios are exact: uniform frames at RT, random regions at RS."""
    v = video(batch, 12, size)
    rows = []
    for rs in REGION_RATIOS:
        model = create_model(AF_ARCH, num_classes=200, num_frames=12, spatial=True, selection="uniform",
                             ratio=rt, region_selection="random" if rs < 1 else "all", region_ratio=rs)
        flops, calls, diff = sparse_against_masked(model, v, check=True)
        rows.append([batch, rt, rs, *latency_columns(batch, flops, time_round_robin(calls, rounds=rounds)),
                     f"{diff:.1e}"])
    return rows


def cuda_graphed(model, v):
    """A callable replaying ``model(v)`` from a CUDA graph captured once (inputs copied into
    the captured buffer); the model must read nothing back from the device (static counts)."""
    static_in = v.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):  # fills the skipped-frame caches outside the capture
            model(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_out = model(static_in)

    def call():
        static_in.copy_(v)
        graph.replay()
        return static_out
    return call


def synced_per_block(model):
    """A copy of ``model`` that synchronises the GPU before every focal block: the cost of
    reading each block's count apart (as sparse execution did before it read them once per
    AF stage)."""
    model = copy.deepcopy(model)
    for stage in model.modules():
        if isinstance(stage, AFStage):
            for block in stage.focal:
                block.register_forward_pre_hook(lambda *_: torch.cuda.synchronize())
    return model


def sync_free(batch, size, rounds, ratio=0.4):
    """The same frames at every focal block (``uniform`` at ``ratio``), run three ways: sparse
    with the count from the policy, sparse with the counts read from the masks (the mask
    given as ``keep=``: one read per AF stage), masked; on a GPU also with a sync before every
    focal block, and static-k (learned navigation with a ratio: its masks made on the device)
    eager and from a CUDA graph. Max abs logit diff against masked."""
    v = video(batch, 12, size)
    static = prepared(af_tsm(ratio=ratio).configure(execution="sparse"))
    masked = copy.deepcopy(static).configure(execution="masked")
    keep = fixed_policy_mask("uniform", batch, 12, ratio, None, DEVICE, torch.float32)
    calls = {"sparse, count from the policy": lambda: static(v), "sparse, counts read once per stage":
             lambda: static(v, keep=keep), "masked": lambda: masked(v)}
    if DEVICE.type == "cuda":
        per_block = synced_per_block(static)
        calls["sparse, counts read once per stage + a sync per focal block"] = lambda: per_block(v, keep=keep)
        static_k = copy.deepcopy(static).configure(selection="navigation", ratio=ratio)
        calls["static-k sparse"] = lambda: static_k(v)
        try:
            calls["static-k sparse, CUDA graph"] = cuda_graphed(static_k, v)
        except Exception as exc:  # noqa: BLE001 - report, do not lose the other rows
            print(f"(CUDA graph capture failed: {type(exc).__name__}: {exc})")
    with torch.inference_mode():
        ref = masked(v).logits
        diffs = {name: (fn().logits - ref).abs().max().item() for name, fn in calls.items()}
    t = time_round_robin(calls, rounds=rounds)
    return [[batch, ratio, name, round(t[name] * 1e3 / batch, 2), round(t[name] / t["masked"], 3),
             f"{diffs[name]:.1e}"] for name in calls]


class BytesMoved:
    """A dispatch mode summing, per stage, the bytes each operator reads and writes: its tensor
    arguments (a broadcast view counted at its storage's size, not its shape's) and outputs.
    A lower bound on the traffic of unfused kernels (each pass reads its inputs and writes its
    output once), and what a fused kernel would save."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        counter = self
        self.stage, self.bytes = None, {}

        def size(t):
            return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                if counter.stage is not None and func not in VIEW_OPS:
                    tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
                    counter.bytes[counter.stage] = counter.bytes.get(counter.stage, 0) + sum(map(size, tensors))
                return out

        self.mode = Mode()


VIEW_OPS = {torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default, torch.ops.aten.permute.default,
            torch.ops.aten.expand.default, torch.ops.aten.reshape.default, torch.ops.aten.slice.Tensor,
            torch.ops.aten.select.int, torch.ops.aten.as_strided.default, torch.ops.aten.t.default,
            torch.ops.aten.unsqueeze.default, torch.ops.aten.squeeze.dim, torch.ops.aten.detach.default,
            torch.ops.aten.alias.default, torch.ops.aten.narrow.default, torch.ops.aten.transpose.int}


def stage_times(batch, size, rounds):
    """Per stage (stem conv, layer1-4) of AF-ResNet50-TSM 12f r=0.4 (sparse) and TSM-ResNet50
    8f, run interleaved: ms and GFLOPs per video (forward hooks), and the roofline's two axes:
    achieved TFLOP/s (FLOPs as 2 x multiply-accumulates) and MB moved per video
    (:class:`BytesMoved`), with the GB/s that makes."""
    from torch.utils.flop_counter import FlopCounterMode

    stages = ("conv1", "layer1", "layer2", "layer3", "layer4")
    af = prepared(af_tsm(ratio=0.4).configure(execution="sparse"))
    tsm = prepared(create_model(TSM_ARCH, num_classes=174, num_frames=8))
    v12, v8 = video(batch, 12, size), video(batch, 8, size)
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    times, moved = {}, {"af": BytesMoved(), "tsm": BytesMoved()}

    def hook(model, tag, timing=True):
        handles = []
        for name in stages:
            mod = getattr(model, name)
            first, last = (mod[0], mod[-1]) if isinstance(mod, torch.nn.ModuleList) else (mod, mod)

            def start(*_, f=first, key=(tag, name)):
                moved[tag].stage = key[1]
                if timing:
                    sync()
                    f._start = time.perf_counter()

            def stop(*_, f=first, key=(tag, name)):
                moved[tag].stage = None
                if timing:
                    sync()
                    times.setdefault(key, []).append(time.perf_counter() - f._start)
            handles += [first.register_forward_pre_hook(start), last.register_forward_hook(stop)]
        return handles

    def flops(model, v):
        """GFLOPs per video of each stage: the stage module's count, or its blocks' summed."""
        with torch.no_grad():
            model(v)  # fills the skipped-frame caches, which a call at this shape then reuses
            with FlopCounterMode(display=False, depth=3) as counter:
                model(v)
        counts = {key.split(".", 1)[1]: sum(c.values()) for key, c in counter.get_flop_counts().items() if "." in key}
        return {name: (counts[name] if name in counts else
                       sum(c for key, c in counts.items() if key.rsplit(".", 1)[0] == name)) / 2e9 / v.shape[0]
                for name in stages}

    gf = {"af": flops(af, v12), "tsm": flops(tsm, v8)}
    for tag, model, v in (("af", af, v12), ("tsm", tsm, v8)):   # bytes: one untimed call each
        handles = hook(model, tag, timing=False)
        with torch.no_grad(), moved[tag].mode:
            model(v)
        for h in handles:
            h.remove()
    hook(af, "af")
    hook(tsm, "tsm")
    time_round_robin({"af": lambda: af(v12), "tsm": lambda: tsm(v8)}, rounds=rounds)
    rows = []
    for name in stages:
        ms = {tag: statistics.median(times[(tag, name)][-rounds:]) * 1e3 / batch for tag in ("af", "tsm")}
        mb = {tag: moved[tag].bytes.get(name, 0) / 1e6 / batch for tag in ("af", "tsm")}
        tflops = {tag: 2 * gf[tag][name] / ms[tag] for tag in ("af", "tsm")}     # GFLOP per ms = TFLOP/s
        gbps = {tag: mb[tag] / ms[tag] for tag in ("af", "tsm")}                 # MB per ms = GB/s
        rows.append([batch, name, round(gf["af"][name], 2), round(gf["tsm"][name], 2),
                     round(gf["af"][name] / gf["tsm"][name], 2), round(ms["af"], 3), round(ms["tsm"], 3),
                     round(ms["af"] / ms["tsm"], 2), round(tflops["af"], 3), round(tflops["tsm"], 3),
                     round(mb["af"], 1), round(mb["tsm"], 1), round(gbps["af"], 1), round(gbps["tsm"], 1)])
    return rows


def bf16_effect(size, rounds, videos=8):
    """Navigation with random weights (trained ones are not available here), so that some
    frames are kept and some skipped; compare fp32 and bf16 on the same inputs."""
    torch.manual_seed(0)
    model = create_model(AF_ARCH, num_classes=174, num_frames=12, shift=True).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Navigation):
                m.conv2.weight.normal_(0, 2.0)
                m.conv2.bias.zero_()
    fp32 = prepare_for_inference(model.to(DEVICE), tune_malloc=True)  # process-wide
    bf16 = copy.deepcopy(fp32)
    bf16.autocast_dtype = torch.bfloat16
    v = video(videos, 12, size, seed=1)
    with torch.inference_mode():
        a, b = fp32(v), bf16(v)
    agree = torch.cat([(x == y).float().flatten() for x, y in zip(a.masks, b.masks)]).mean().item()
    kept = torch.cat([x.flatten() for x in a.masks]).mean().item()
    diff = (a.logits - b.logits).abs().max().item()
    scale = a.logits.abs().max().item()
    top1 = (a.logits.argmax(1) == b.logits.argmax(1)).float().mean().item()
    v1 = v[:1]
    t = time_round_robin({"fp32": lambda: fp32(v1), "bf16": lambda: bf16(v1)}, rounds=rounds)
    return markdown_table(
        ["videos", "frames kept (fp32)", "frame choices equal", "max abs logit diff", "max abs logit",
         "same top-1", "latency fp32 / bf16 (batch 1)"],
        [[videos, f"{kept:.0%}", f"{agree:.1%}", f"{diff:.3g}", f"{scale:.3g}", f"{top1:.0%}",
          round(t["fp32"] / t["bf16"], 2)]])


def main(argv=None):
    global DEVICE, BF16
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in the sparse, more and spatial tables")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=[x for x in SECTIONS if x not in ("prep", "compile")])
    parser.add_argument("--quick", action="store_true", help="112x112, batch 1, 2 rounds: a smoke run")
    parser.add_argument("--small", action="store_true",
                        help="af_resnet_small and tsm_resnet_small in place of the ResNet50s: checks the sections fast")
    parser.add_argument("--compile-modes", nargs="+", choices=("default", "reduce-overhead", "max-autotune"),
                        help="torch.compile modes of --sections compile (default: default, and reduce-overhead on a GPU)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.batches, args.rounds = 112, args.batches[:1], 2
    DEVICE, BF16 = torch.device(args.device), args.bf16
    global COMPILE_MODES, AF_ARCH, TSM_ARCH
    if args.small:
        AF_ARCH, TSM_ARCH = "af_resnet_small", "tsm_resnet_small"
    if args.compile_modes:
        COMPILE_MODES = [None if m == "default" else m for m in args.compile_modes]
    if DEVICE.type == "cuda":
        torch.backends.cudnn.benchmark = True
        where = f"{torch.cuda.get_device_name(DEVICE)}, {'bf16 autocast' if BF16 else 'fp32 (cuDNN TF32, torch default)'}"
    else:
        torch.set_num_threads(args.threads)
        where = f"{cpu_description()}; {torch.get_num_threads()} threads{', bf16 autocast' if BF16 else ''}"
    start = time.time()
    print(f"# afnet model benchmark: {where}, torch {torch.__version__}, "
          f"{args.size}x{args.size}, one warm-up call each, medians of {args.rounds} interleaved rounds"
          f"{' (--small: af_resnet_small and tsm_resnet_small in every row)' if args.small else ''}\n")
    if "steps" in args.sections:
        print("## Inference steps\n")
        print(steps_table(args.size, args.rounds), "\n", flush=True)
    if "sparse" in args.sections:
        print("## Sparse vs masked, AF-ResNet50-TSM, 12 frames\n")
        rows = [r for b in args.batches for r in sparse_vs_masked(b, args.size, args.rounds)]
        print(markdown_table(["batch", "ratio", "GFLOPs sparse", "GFLOPs masked", "FLOPs ratio", "ms/video sparse",
                              "ms/video masked", "latency ratio", "latency vs FLOPs ratio"], rows), "\n", flush=True)
    if "more" in args.sections:
        print("## More is less: 12 frames at r=0.4 vs TSM with 8 frames\n")
        rows = [r for b in args.batches for r in more_is_less(b, args.size, args.rounds)]
        print(markdown_table(["batch", "model", "GFLOPs/video", "FLOPs ratio", "ms/video", "latency ratio"], rows),
              "\n", flush=True)
    if "spatial" in args.sections:
        print("## Spatial navigation: region-sparse vs masked, AF-ResNet50, 12 frames, RT 0.8\n")
        rows = [r for b in args.batches for r in spatial(b, args.size, args.rounds)]
        print(markdown_table(["batch", "RT", "RS", "GFLOPs sparse", "GFLOPs masked", "FLOPs ratio", "ms/video sparse",
                              "ms/video masked", "latency ratio", "latency vs FLOPs ratio",
                              "max abs logit diff, sparse vs masked"], rows), "\n", flush=True)
    if "prep" in args.sections:
        print("## Inference preparation steps in combination (ms per video)\n")
        rows = [r for b in args.batches for r in prep_steps(b, args.size, args.rounds)]
        print(markdown_table(["batch", "model", "eager NCHW", "channels-last", "BN folded (NCHW)",
                              "BN folded + channels-last", "bf16, channels-last", "bf16, BN folded + channels-last"],
                             rows), "\n", flush=True)
    if "sync" in args.sections:
        print("## Sizing the sparse gather: count from the policy vs read from the masks, AF-ResNet50-TSM 12f\n")
        rows = [r for b in args.batches for r in sync_free(b, args.size, args.rounds)]
        print(markdown_table(["batch", "ratio", "execution", "ms/video", "latency vs masked",
                              "max abs logit diff vs masked"], rows), "\n", flush=True)
    if "compile" in args.sections:
        print("## More is less under torch.compile: AF-ResNet50-TSM 12f static-k r=0.4 vs TSM-ResNet50 8f\n")
        rows = [r for b in args.batches for r in more_compiled(b, args.size, args.rounds)]
        print(markdown_table(["batch", "model", "GFLOPs/video", "ms/video", "latency vs TSM eager",
                              "latency vs TSM, same compilation", "compile s"], rows), "\n", flush=True)
    if "stages" in args.sections:
        print("## Where the time goes: AF-ResNet50-TSM 12f r=0.4 (sparse) vs TSM-ResNet50 8f, per stage\n")
        rows = [r for b in args.batches for r in stage_times(b, args.size, args.rounds)]
        print(markdown_table(["batch", "stage", "GFLOPs AF", "GFLOPs TSM", "FLOPs ratio", "ms AF", "ms TSM",
                              "latency ratio", "TFLOP/s AF", "TFLOP/s TSM", "MB moved AF", "MB moved TSM",
                              "GB/s AF", "GB/s TSM"], rows), "\n", flush=True)
        print("(per video; GFLOPs are multiply-accumulates, TFLOP/s counts 2 FLOPs each; MB moved: every "
              "operator's tensor inputs and outputs once, unfused, views free)\n", flush=True)
    if "bf16" in args.sections:
        print("## bf16 autocast\n")
        print(bf16_effect(args.size, args.rounds), "\n")
    print(f"(total {time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
