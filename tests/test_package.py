"""``afnet convert`` and packages (afnet.package): safetensors weights + config.json, written
from a project checkpoint or the authors' layout, and read back by every loader."""
from __future__ import annotations

import json

import pytest
import torch

import afnet
from afnet.cli import main
from afnet.inference import load_model_for_inference
from afnet.package import CONFIG_FILE, WEIGHTS_FILE, read_package
from tests.helpers import randomize

T, K = 4, 3
NAMES = ["pour", "stir", "wipe"]


@pytest.fixture
def labels(tmp_path):
    path = tmp_path / "category.txt"
    path.write_text("\n".join(NAMES) + "\n")
    return str(path)


def _model(seed=1):
    return randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T), seed=seed).eval()


def _logits(model, seed=0):
    video = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = model(video)
    return out.logits, out.masks


def test_convert_a_project_checkpoint(tmp_path, capsys):
    model = _model()
    ckpt = tmp_path / "best.ckpt"
    afnet.save_checkpoint(ckpt, model, class_names=NAMES, config={"data": {"preset": "synthetic", "input_size": 32}})
    out = tmp_path / "pkg"
    assert main(["convert", str(ckpt), str(out)]) == 0
    assert f"{out}: af_resnet_small, {T} frames, {K} classes (named), 32px synthetic" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["format"] == "afnet-package" and config["afnet_version"] == afnet.__version__
    assert config["arch"] == "af_resnet_small" and config["model_args"]["num_frames"] == T
    assert config["labels"] == NAMES and config["selection"]["selection"] == "navigation"
    prep = config["preprocessing"]
    assert (prep["name"], prep["input_size"], prep["mean"], prep["std"]) == (
        "synthetic", 32, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

    # every loader reads the folder: create_model(pretrained=), load_checkpoint, load_model_for_inference
    rebuilt = afnet.create_model("af_resnet_small", num_classes=K, num_frames=T, pretrained=out).eval()
    for a, b in zip(_logits(model), _logits(rebuilt)):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else all(torch.equal(x, y) for x, y in zip(a, b))
    report = afnet.load_checkpoint(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T), out)
    assert report.source == "afnet" and not report.skipped
    im = load_model_for_inference(out)
    assert im.class_names == NAMES and im.config.name == "synthetic" and im.config.input_size == 32
    assert repr(im).startswith("InferenceModel(af_resnet_small, 4 frames, 3 classes (named), 32px synthetic")
    assert len(repr(im).splitlines()) == 1


def test_convert_the_authors_layout_then_predict_without_architecture(tmp_path, capsys, labels):
    """The authors' video checkpoints store no architecture: convert takes it once, and the
    package then predicts alone."""
    from tests.helpers import write_video

    model = _model(seed=2)
    state = model.state_dict()
    authors = tmp_path / "AF-small.pth.tar"
    torch.save({"state_dict": {f"module.base_model.{k}": v for k, v in state.items() if not k.startswith("fc.")}
                | {f"module.new_fc.{k[3:]}": v for k, v in state.items() if k.startswith("fc.")}}, authors)
    out = tmp_path / "pkg"
    assert main(["convert", str(authors), str(out)]) == 2
    assert "give --model, --frames, --num-classes, --labels" in capsys.readouterr().err
    assert main(["convert", str(authors), str(out), "--model", "af_resnet_small", "--frames", str(T),
                 "--num-classes", str(K), "--labels", labels, "--preset", "synthetic", "--size", "32"]) == 0
    capsys.readouterr()
    package = read_package(out)
    assert package["class_names"] == NAMES and package["format"] == "afnet"
    assert all(torch.equal(package["state_dict"][k], v) for k, v in state.items())

    video = write_video(tmp_path / "v.mp4", 12, size=(32, 32))
    assert main(["predict", video, "--checkpoint", str(out), "--json", "--no-flops"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["ok"] and row["top"][0]["name"] == NAMES[row["top"][0]["class"]]


def test_a_folder_that_is_not_a_package_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no afnet package: no config.json"):
        afnet.load_checkpoint(_model(), tmp_path)
    (tmp_path / CONFIG_FILE).write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not an afnet package config"):
        afnet.load_checkpoint(_model(), tmp_path)
