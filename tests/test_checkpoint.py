"""Checkpoints: round trip, the authors' released layouts, and errors that name the key."""
import os

import pytest
import torch

import afnet
from afnet.checkpoint import CheckpointError, read_checkpoint, translate_authors_key
from tests.authors_reference import af_mobilenetv3_forward, af_resnet_forward
from tests.helpers import randomize, synthetic_state

# layout name -> (model, classes, frames)
LAYOUT_MODELS = {
    "imagenet_AF-ResNet50": ("af_resnet50", 1000, 1),
    "imagenet_AF-ResNet101": ("af_resnet101", 1000, 1),
    "imagenet_AF-MobileNetV3": ("af_mobilenetv3", 1000, 1),
    "sthv1_AF_resnet50_T8": ("af_resnet50", 174, 8),
    "sthv1_AF_resnet50_T12": ("af_resnet50", 174, 12),
    "sthv1_AF_resnet101_T12": ("af_resnet101", 174, 12),
    "sthv1_AF_mobilenetv3_T12": ("af_mobilenetv3", 174, 12),
}


def assert_same_as_reference(out, ref_logits, ref_masks):
    """Identical frame choices (some kept, some skipped) and logits to float tolerance."""
    kept = torch.stack([m.mean() for m in ref_masks])
    assert (kept > 0).any() and (kept < 1).any(), "the test needs some frames kept and some skipped"
    for a, b in zip(ref_masks, out.masks):
        assert torch.equal(a, b)
    torch.testing.assert_close(out.logits, ref_logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout_name", sorted(LAYOUT_MODELS))
def test_authors_layout_maps_exactly(layouts, layout_name):
    name, classes, frames = LAYOUT_MODELS[layout_name]
    model = afnet.create_model(name, num_classes=classes, num_frames=frames)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = {translate_authors_key(k): tuple(s) for k, s in layouts[layout_name].items()}
    assert len(theirs) == len(layouts[layout_name])  # the renaming is one-to-one
    assert ours == theirs


@pytest.mark.parametrize("shift", [False, True])
def test_authors_video_checkpoint_computes_what_their_code_computes(layouts, tmp_path, shift):
    state = synthetic_state(layouts["sthv1_AF_resnet50_T8"])
    path = tmp_path / "sthv1_AF_resnet50_T8.pth.tar"
    torch.save({"state_dict": state, "epoch": 40, "best_prec1": 48.1}, path)
    model = afnet.create_model("af_resnet50", num_classes=174, num_frames=8, shift=shift).eval()
    report = afnet.load_checkpoint(model, path)
    assert report.source == "authors' video" and report.loaded == 513 and not report.skipped
    assert report.meta["epoch"] == 40
    video = torch.randn(2, 8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_logits, ref_masks = af_resnet_forward(state, video, shift)
        out = model(video)
    assert_same_as_reference(out, ref_logits, ref_masks)


def test_authors_mobilenet_checkpoint_computes_what_their_code_computes(layouts, tmp_path):
    state = synthetic_state(layouts["sthv1_AF_mobilenetv3_T12"], seed=3)
    path = tmp_path / "sthv1_AF_mobilenetv3_T12.pth.tar"
    torch.save({"state_dict": state}, path)
    model = afnet.create_model("af_mobilenetv3", num_classes=174, num_frames=12).eval()
    assert afnet.load_checkpoint(model, path).loaded == 402
    video = torch.randn(2, 12, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_logits, ref_masks = af_mobilenetv3_forward(state, video)
        out = model(video)
    assert_same_as_reference(out, ref_logits, ref_masks)


@pytest.mark.parametrize("layout_name", ["imagenet_AF-ResNet50", "imagenet_AF-MobileNetV3"])
def test_imagenet_backbone_leaves_navigation_and_classifier_fresh(layouts, tmp_path, layout_name, caplog):
    name = LAYOUT_MODELS[layout_name][0]
    state = synthetic_state(layouts[layout_name])
    # the released files may hold the navigation at another T: here T=1, model T=8
    path = tmp_path / "backbone.pth.tar"
    torch.save({"state_dict": state}, path)
    model = afnet.create_model(name, num_classes=174, num_frames=8)
    report = afnet.load_checkpoint(model, path)
    assert report.source == "authors' ImageNet"
    skipped = set(report.skipped)
    assert any(".navigation." in k for k in skipped)
    assert any(k.startswith("fc.") for k in skipped)
    assert all(".navigation." in k or k.startswith("fc.") for k in skipped)
    assert "navigation" in str(report) and "classifier" in str(report)
    warned = [r for r in caplog.records if r.levelname == "WARNING" and r.name == "afnet"]
    assert warned and "left initialised" in warned[0].getMessage()
    # the backbone itself was copied
    key = "conv1.weight" if name.startswith("af_resnet") else "conv.weight"
    assert torch.equal(model.state_dict()[key], state["module." + key])


def test_round_trip(tmp_path):
    model = randomize(afnet.create_model("af_resnet_small", num_classes=6, num_frames=4, shift=True)).eval()
    path = tmp_path / "run" / "last.pt"
    afnet.save_checkpoint(path, model, epoch=3, config={"lr": 0.01})
    assert os.listdir(path.parent) == ["last.pt"]  # no temporary file left behind
    fresh = afnet.create_model("af_resnet_small", num_classes=6, num_frames=4, shift=True).eval()
    report = afnet.load_checkpoint(fresh, path)
    assert report.source == "afnet" and report.meta["epoch"] == 3 and report.meta["arch"] == "af_resnet_small"
    video = torch.randn(2, 4, 3, 64, 64)
    with torch.no_grad():
        a, b = model(video), fresh(video)
    assert torch.equal(a.logits, b.logits)


def test_checkpoint_written_before_the_renames_still_loads(tmp_path):
    """An afnet checkpoint written before the model described itself: AF-MobileNetV3's first
    block stored as ``head.*`` (now ``stage0.*``), ``model_args`` as the old code wrote them, a
    config dict (the run's preset and size, and its frame policy) beside them."""
    from afnet.inference import load_model_for_inference

    model = randomize(afnet.create_model("af_mobilenetv3", num_classes=5, num_frames=4)).eval()
    state = {("head." + k[len("stage0."):] if k.startswith("stage0.") else k): v
             for k, v in model.state_dict().items()}
    assert any(k.startswith("head.") for k in state)
    path = tmp_path / "old.ckpt"
    torch.save({"format": "afnet", "arch": "af_mobilenetv3", "state_dict": state,
                "model_args": {"num_classes": 5, "num_frames": 4, "shift": True},
                "config": {"data": {"preset": "synthetic", "input_size": 48},
                           "model": {"selection": "uniform", "ratio": 0.5}}}, path)
    fresh = afnet.create_model("af_mobilenetv3", num_classes=5, num_frames=4).eval()
    assert afnet.load_checkpoint(fresh, path).source == "afnet"
    video = torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh(video).logits, model(video).logits)
    im = load_model_for_inference(path)
    assert (im.arch, im.config.name, im.config.input_size, im.model.selection, im.model.ratio) == (
        "af_mobilenetv3", "synthetic", 48, "uniform", 0.5)
    assert [p.name for p in im.model.navigation_points()] == im.points and len(im.points) == 5


def test_checkpoint_records_the_models_own_arguments(tmp_path):
    model = afnet.create_model("af_resnet_small", num_classes=6, num_frames=4, dropout=0.2, navigation_bias=(0, 3),
                               spatial=True, region_grid=(4, 2, 1))
    path = tmp_path / "m.pt"
    afnet.save_checkpoint(path, model)
    args = read_checkpoint(path)["model_args"]
    assert args == {"num_classes": 6, "num_frames": 4, "shift": False, "dropout": 0.2, "navigation_bias": [0, 3],
                    "spatial": True, "region_grid": [4, 2, 1], "temporal_navigation": "first"}
    rebuilt = afnet.create_model("af_resnet_small", **args)
    assert rebuilt.model_args() == args and afnet.load_checkpoint(rebuilt, path).source == "afnet"


def test_frame_count_mismatch_is_named(layouts, tmp_path):
    path = tmp_path / "t12.pth.tar"
    torch.save({"state_dict": synthetic_state(layouts["sthv1_AF_resnet50_T12"])}, path)
    model = afnet.create_model("af_resnet50", num_classes=174, num_frames=8)
    with pytest.raises(CheckpointError, match=r"layer1\.navigation\.0\.conv2\.weight.*checkpoint T=12, model T=8"):
        afnet.load_checkpoint(model, path)


def test_classifier_size_mismatch_and_skip(tmp_path):
    src = afnet.create_model("af_resnet_small", num_classes=6, num_frames=4)
    path = tmp_path / "six.pt"
    afnet.save_checkpoint(path, src)
    other = afnet.create_model("af_resnet_small", num_classes=9, num_frames=4)
    with pytest.raises(CheckpointError, match="checkpoint has 6 classes, model 9"):
        afnet.load_checkpoint(other, path)
    report = afnet.load_checkpoint(other, path, skip_classifier=True)
    assert set(report.skipped) == {"fc.weight", "fc.bias"}


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = afnet.create_model("af_resnet_small", num_classes=6, num_frames=4).state_dict()
    state.pop("layer2.fusion.fc.0.weight")
    state["layer9.extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        afnet.load_checkpoint(afnet.create_model("af_resnet_small", num_classes=6, num_frames=4), path)
    assert "missing key layer2.fusion.fc.0.weight" in str(err.value)
    assert "unexpected key layer9.extra.weight" in str(err.value)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_never_executes_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        afnet.load_checkpoint(afnet.create_model("af_resnet_small", num_classes=6, num_frames=4), path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        afnet.load_checkpoint(afnet.create_model("af_resnet_small", num_classes=6, num_frames=4), tmp_path / "nope.pt")


def test_own_image_pretrained_backbone_fine_tunes_a_video_model(tmp_path):
    """An afnet checkpoint trained with T=1 (image pre-training, as the paper's ImageNet
    stage) loads into a video model like the authors' backbones: navigation (sized by T)
    and classifier start fresh, everything else is copied."""
    image = randomize(afnet.create_model("af_resnet_small", num_classes=10, num_frames=1))
    path = tmp_path / "image.pt"
    afnet.save_checkpoint(path, image)
    video = afnet.create_model("af_resnet_small", num_classes=6, num_frames=8)
    report = afnet.load_checkpoint(video, path)
    assert report.is_backbone and report.source == "afnet image backbone (T=1)"
    assert {k.split(".")[0] for k in report.skipped} <= {"layer1", "layer2", "layer3", "fc"}
    assert any(k.startswith("fc.") for k in report.skipped)  # 10 image classes, 6 video classes
    assert all(".navigation." in k or k.startswith("fc.") for k in report.skipped)
    assert torch.equal(video.layer2.focal[0].conv2.weight, image.layer2.focal[0].conv2.weight)


def test_image_backbone_fine_tunes_a_spatial_model(tmp_path):
    """The same image backbone starts a spatial model (paper §3.3 on ActivityNet): per-block
    temporal navigation is not in a model that navigates at the first layer, and the first-
    layer and spatial navigation start fresh; every convolution of both branches is copied."""
    image = randomize(afnet.create_model("af_resnet_small", num_classes=10, num_frames=1))
    path = tmp_path / "image.pt"
    afnet.save_checkpoint(path, image)
    video = afnet.create_model("af_resnet_small", num_classes=6, num_frames=8, spatial=True, region_grid=(4, 2, 1))
    report = afnet.load_checkpoint(video, path)
    assert report.is_backbone
    assert any(k.startswith("navigation.") for k in report.skipped)
    assert any(".spatial." in k for k in report.skipped)
    assert any(k.startswith("layer1.navigation.") for k in report.skipped)  # the checkpoint's, unused
    assert all(".navigation." in k or ".spatial." in k or k.startswith(("navigation.", "fc."))
               for k in report.skipped)
    assert torch.equal(video.layer3.focal[0].conv1.weight, image.layer3.focal[0].conv1.weight)
    with pytest.raises(CheckpointError, match="missing key navigation.conv1.weight"):
        temporal = afnet.create_model("af_resnet_small", num_classes=6, num_frames=8)
        afnet.save_checkpoint(tmp_path / "video.pt", temporal)
        afnet.load_checkpoint(video, tmp_path / "video.pt")  # a video checkpoint must fit whole


def test_temporal_video_model_starts_a_spatial_model(tmp_path):
    """A temporal-only video checkpoint (as released) loads into a spatial model with the
    same temporal layout (navigation per block): every trained weight is copied and only
    the spatial navigation starts fresh, reported as such."""
    temporal = randomize(afnet.create_model("af_resnet_small", num_classes=6, num_frames=4))
    afnet.save_checkpoint(tmp_path / "t.pt", temporal)
    spatial = afnet.create_model("af_resnet_small", num_classes=6, num_frames=4, spatial=True,
                                 temporal_navigation="block", region_grid=(4, 2, 1))
    report = afnet.load_checkpoint(spatial, tmp_path / "t.pt")
    assert report.skipped and all(".spatial." in k for k in report.skipped)
    assert all("checkpoint has none" in why for why in report.skipped.values())
    assert torch.equal(spatial.layer2.navigation[0].conv2.weight, temporal.layer2.navigation[0].conv2.weight)
    partial = {k: v for k, v in spatial.state_dict().items() if not k.startswith("layer3.spatial.")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing key layer3.spatial.0"):  # a spatial checkpoint must fit whole
        afnet.load_checkpoint(spatial, tmp_path / "partial.pt")
