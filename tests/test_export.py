"""``afnet export`` and ``afnet predict --onnx``: the exported graph computes what PyTorch
computes (logits to 1e-4 relative, identical masks), masked and static-k sparse, on the
authors' checkpoint layouts; its metadata reads back; bad input names the problem."""
from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import torch

import afnet
from afnet.cli import main
from tests.helpers import randomize, synthetic_state, write_video

pytest.importorskip("onnxruntime", reason="afnet[export] is not installed")
pytest.importorskip("onnxscript", reason="afnet[export] is not installed")
import onnx

from afnet.inference import load_model_for_inference
from afnet.inference.onnx import OnnxModel, export_execution, export_onnx, load_onnx_for_inference, read_onnx_metadata

T, K, SIZE = 8, 5, 48
NAMES = ["left", "right", "up", "down", "still"]


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest reference logit."""
    return float((a - b).abs().max() / b.abs().max())


def op_counts(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A project checkpoint (af_resnet_small, TSM, T=8, 5 named classes, synthetic preset at
    48 px), its masked export (the learned threshold) through the API and its static-k sparse
    export (r=0.5) through the CLI."""
    folder = tmp_path_factory.mktemp("export")
    ckpt = folder / "small.pt"
    model = randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T, shift=True), seed=2)
    afnet.save_checkpoint(ckpt, model, class_names=NAMES, config={"data": {"preset": "synthetic", "input_size": SIZE}})
    masked = export_onnx(ckpt, folder / "masked.onnx", execution="masked")
    assert main(["export", "--checkpoint", str(ckpt), "--ratio", "0.5", "--out", str(folder / "sparse.onnx")]) == 0
    return {"ckpt": str(ckpt), "masked": masked, "sparse": str(folder / "sparse.onnx"), "folder": folder}


def test_metadata_reads_back(small):
    meta = read_onnx_metadata(small["sparse"])
    im = load_model_for_inference(small["ckpt"])
    assert (meta.arch, meta.num_frames, meta.num_classes, meta.input_size) == ("af_resnet_small", T, K, SIZE)
    assert meta.mean == list(im.config.mean) and meta.std == list(im.config.std)
    assert meta.labels == NAMES
    assert (meta.selection, meta.ratio, meta.execution) == ("navigation", 0.5, "sparse")
    assert meta.points == ["layer1.0", "layer2.0", "layer3.0"] and meta.outputs == ["logits", "masks"]
    assert meta.shift and not meta.spatial and meta.source == "afnet" and meta.checkpoint == "small.pt"
    assert meta.dataset_config() == im.config          # the video is read as for the checkpoint
    masked = small["masked"].metadata
    assert (masked.selection, masked.ratio, masked.execution) == ("navigation", None, "masked")
    assert 0 < meta.gflops_per_view < masked.gflops_per_view   # the sparse graph computes half the focal frames
    props = {p.key: p.value for p in onnx.load(small["sparse"]).metadata_props}
    assert json.loads(props["num_frames"]) == T and json.loads(props["labels"]) == NAMES   # plain keys, JSON values


@pytest.mark.parametrize("execution", ["masked", "sparse"])
def test_small_round_trip_any_batch(small, execution):
    path = small["masked"].path if execution == "masked" else small["sparse"]
    model = afnet.create_model("af_resnet_small", num_classes=K, num_frames=T, shift=True).eval()
    afnet.load_checkpoint(model, small["ckpt"])
    model.configure(execution=execution, ratio=0.5 if execution == "sparse" else None)
    onnx_model = OnnxModel(path, threads=1)
    for batch in (1, 3):   # the batch is dynamic in the graph
        video = torch.randn(batch, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = model(video)
        got = onnx_model(video)
        assert rel_diff(got.logits, ref.logits) < 1e-4
        assert len(got.masks) == 3 and all(torch.equal(a, b) for a, b in zip(got.masks, ref.masks))
        if execution == "sparse":
            assert all((m.sum(1) == 4).all() for m in got.masks)   # static-k: round(0.5 * 8) per video
    assert small["masked"].masks_equal and small["masked"].max_rel_diff < 1e-4   # the export's own check


def test_graphs_shift_by_slices_and_scatter_only_the_kept_frames(small):
    """The temporal shift exports as slices and concatenations (no scatter per written slice);
    the sparse graph picks k frames per video (TopK), gathers them and scatters the focal
    output back once per focal block."""
    masked, sparse = op_counts(small["masked"].path), op_counts(small["sparse"])
    assert masked["ScatterND"] == 0 and masked["ScatterElements"] == 0 and masked["TopK"] == 0
    assert sparse["ScatterND"] == 3 and sparse["TopK"] == 3   # per focal block: the kept frames


def test_predict_onnx_reports_as_the_checkpoint_does(small, capsys):
    video = write_video(small["folder"] / "clip.mp4", 20, gop=6)
    assert main(["predict", video, "--checkpoint", small["ckpt"], "--ratio", "0.5", "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert main(["predict", video, "--onnx", small["sparse"], "--json", "--threads", "1"]) == 0
    got = json.loads(capsys.readouterr().out)
    for key in ("path", "ok", "frame_indices", "points", "masks", "kept_ratio", "regions", "views", "execution",
                "precision"):
        assert got[key] == ref[key], key
    assert [t["class"] for t in got["top"]] == [t["class"] for t in ref["top"]]
    assert [t["name"] for t in got["top"]] == [t["name"] for t in ref["top"]] and got["top"][0]["name"] in NAMES
    assert got["top"][0]["score"] == pytest.approx(ref["top"][0]["score"], abs=1e-4)
    assert got["gflops"] == pytest.approx(ref["gflops"], rel=1e-4)   # recorded at export = counted by torch
    assert main(["predict", video, "--onnx", small["sparse"]]) == 0    # the text report, masks included
    out, err = capsys.readouterr()
    assert "layer1.0" in out and "4/8" in out and "GFLOPs" in out and "ONNX" in err
    im = load_onnx_for_inference(small["sparse"])
    assert im.class_names == NAMES and im.point_names == ["layer1.0", "layer2.0", "layer3.0"]


def test_onnx_input_errors_name_the_file(small, tmp_path, capsys):
    onnx_model = OnnxModel(small["sparse"])
    with pytest.raises(ValueError, match=r"sparse\.onnx was exported for 8 frames per video .* got a video with 12"):
        onnx_model(torch.zeros(1, 12, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"exported for \(3, 48, 48\) frames, got \(3, 64, 64\)"):
        onnx_model(torch.zeros(1, T, 3, 64, 64))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx model")
    with pytest.raises(ValueError, match="junk.onnx: not a readable ONNX model"):
        read_onnx_metadata(junk)
    plain = tmp_path / "plain.onnx"
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), plain)
    with pytest.raises(ValueError, match="plain.onnx: no afnet metadata"):
        read_onnx_metadata(plain)
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        read_onnx_metadata(tmp_path / "missing.onnx")
    assert main(["predict", str(tmp_path), "--onnx", small["sparse"], "--ratio", "0.25"]) == 2
    assert "--ratio: fixed in" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--onnx", small["sparse"], "--region-ratio", "0.5"]) == 2
    assert "--region-ratio: fixed in" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--onnx", small["sparse"], "--checkpoint", small["ckpt"]]) == 2
    assert "give --checkpoint or --onnx, not both" in capsys.readouterr().err


def test_export_refuses_what_a_static_graph_cannot_do():
    model = afnet.create_model("af_resnet_small", num_classes=K, num_frames=T).eval()
    with pytest.raises(ValueError, match=r"execution sparse needs a fixed number of frames per video .* ratio R"):
        export_execution(model, "sparse")
    assert export_execution(model, "auto") == "masked" and export_execution(model.configure(ratio=0.5)) == "sparse"
    assert export_execution(model.configure(selection="uniform", ratio=0.5)) == "sparse"
    with pytest.raises(ValueError, match="selection 'random' draws its frames per call"):
        export_execution(model.configure(selection="random", ratio=0.5))
    spatial = afnet.create_model("af_resnet_small", num_classes=K, num_frames=T, spatial=True, region_grid=2).eval()
    with pytest.raises(ValueError, match="region-sparse execution is not exported .* export it with execution masked"):
        export_execution(spatial.configure(ratio=0.5), "sparse")
    assert export_execution(spatial.configure(ratio=0.5)) == "masked"


def test_export_bad_checkpoint_and_frame_mismatch_name_the_problem(layouts, tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"garbage, not a checkpoint")
    assert main(["export", "--checkpoint", str(bad), "--out", out]) == 2
    assert "bad.pth.tar: cannot read as a weights-only torch checkpoint" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", out]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    authors = tmp_path / "sthv1_AF_resnet50_T8.pth.tar"
    torch.save({"state_dict": synthetic_state(layouts["sthv1_AF_resnet50_T8"])}, authors)
    labels = tmp_path / "category.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(174)) + "\n")
    common = ["export", "--checkpoint", str(authors), "--model", "af_resnet50", "--num-classes", "174", "--out", out]
    assert main([*common, "--labels", str(labels), "--frames", "12"]) == 2
    err = capsys.readouterr().err
    assert "sthv1_AF_resnet50_T8.pth.tar" in err and "checkpoint T=8, model T=12" in err
    assert main([*common, "--frames", "8"]) == 2
    assert "give --labels" in capsys.readouterr().err
    assert not os.path.exists(out)


# The bars of issue 14: the three released families on the authors' layouts (synthetic weights
# of the documented shapes), masked with the learned threshold and static-k sparse.
FAMILIES = [("sthv1_AF_resnet50_T8", "af_resnet50", 8, False, 64),
            ("sthv1_AF_resnet50_T12", "af_resnet50", 12, True, 64),
            ("sthv1_AF_mobilenetv3_T12", "af_mobilenetv3", 12, True, 96)]


@pytest.mark.slow
@pytest.mark.parametrize("execution", ["masked", "sparse"])
@pytest.mark.parametrize("layout,name,frames,shift,size", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_authors_checkpoint_exports_equal_pytorch(layouts, tmp_path, layout, name, frames, shift, size, execution):
    ckpt = tmp_path / f"{layout}.pth.tar"
    torch.save({"state_dict": synthetic_state(layouts[layout], seed=frames)}, ckpt)
    labels = tmp_path / "category.txt"
    labels.write_text("\n".join(f"action {i}" for i in range(174)) + "\n")
    ratio = 0.5 if execution == "sparse" else None
    report = export_onnx(ckpt, tmp_path / "m.onnx", name, frames, 174, labels, size=size, shift=shift, ratio=ratio,
                         execution=execution, check=False)
    assert report.metadata.execution == execution and report.metadata.labels[3] == "action 3"
    model = afnet.create_model(name, num_classes=174, num_frames=frames, shift=shift).eval()
    afnet.load_checkpoint(model, ckpt)
    model.configure(execution=execution, ratio=ratio)
    video = torch.randn(2, frames, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = model(video)
    got = OnnxModel(report.path, threads=1)(video)
    assert rel_diff(got.logits, ref.logits) < 1e-4
    assert len(got.masks) == len(ref.masks) and all(torch.equal(a, b) for a, b in zip(got.masks, ref.masks))
    kept = torch.stack([m.mean() for m in ref.masks])
    if execution == "masked":   # the learned threshold: the test needs frames kept and skipped
        assert (kept > 0).any() and (kept < 1).any()
    else:
        assert torch.all(kept == round(0.5 * frames) / frames)


@pytest.mark.slow
def test_spatial_model_exports_its_regions(tmp_path):
    model = randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=4, spatial=True,
                                         region_grid=2), seed=3)
    ckpt = tmp_path / "spatial.pt"
    afnet.save_checkpoint(ckpt, model, config={"data": {"preset": "synthetic", "input_size": 64}})
    report = export_onnx(ckpt, tmp_path / "spatial.onnx")
    meta = report.metadata
    assert meta.execution == "masked" and meta.spatial and meta.region_grid == [2, 2, 2]
    assert meta.outputs == ["logits", "masks", "regions.layer1.0", "regions.layer2.0", "regions.layer3.0"]
    assert report.masks_equal and report.max_rel_diff < 1e-4
    video = torch.randn(2, 4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = load_model_for_inference(ckpt).model(video)
    got = OnnxModel(report.path)(video)
    assert rel_diff(got.logits, ref.logits) < 1e-4
    assert all(torch.equal(a, b) for a, b in zip(got.regions, ref.regions))
    assert any(0 < r.mean() < 1 for r in got.regions)
