"""Three-line inference (afnet.pipeline): a package written by ``afnet convert``, served over
http://127.0.0.1, classifies a video file, a frame folder, a decoded tensor and a list."""
from __future__ import annotations

import pytest
import torch

import afnet
from afnet.cli import main
from tests.helpers import randomize, write_video
from tests.test_weights import serve_folder

T, K = 4, 3
NAMES = ["pour", "stir", "wipe"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder served over HTTP holding ``pkg/``: af_resnet_small whose classifier answers
    class 1 ("stir") for any video (weights 0, bias 5 for it), converted by ``afnet convert``."""
    root = tmp_path_factory.mktemp("classifier")
    model = randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T), seed=1)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([0.0, 5.0, 1.0]))
    labels = root / "category.txt"
    labels.write_text("\n".join(NAMES) + "\n")
    afnet.save_checkpoint(root / "best.ckpt", model, config={"data": {"preset": "synthetic", "input_size": 32}})
    assert main(["convert", str(root / "best.ckpt"), str(root / "site" / "pkg"), "--labels", str(labels)]) == 0
    return root / "site"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "v.mp4", 12, size=(32, 32))


def test_three_lines_from_a_url(site, video, tmp_path, monkeypatch):
    monkeypatch.setenv("AFNET_CACHE", str(tmp_path / "cache"))
    with serve_folder(site) as (base, requests):
        clf = afnet.pipeline(f"{base}pkg/", device="cpu")
        result = clf(video, top_k=2)
        assert [t["label"] for t in result.top] == ["stir", "wipe"]
        assert result.top[0]["score"] == pytest.approx(torch.tensor([0.0, 5.0, 1.0]).softmax(0)[1].item(), abs=1e-4)
        assert sorted(requests) == ["/pkg/config.json", "/pkg/model.safetensors"]
        again = afnet.pipeline(f"{base}pkg/")      # from the cache: no new request
        assert len(requests) == 2 and again(video).top[0]["label"] == "stir"
    assert result.path == video and result.gflops > 0
    points = clf.model.points
    assert list(result.kept) == points and len(points) == 3
    frames = result.prediction.frame_indices
    for point, mask in zip(points, result.prediction.masks):
        assert result.kept[point] == [f for f, k in zip(frames, mask) if k]
    assert result.to_dict()["top"] == result.top
    assert repr(clf).startswith("VideoClassifier(InferenceModel(af_resnet_small, 4 frames") and "\n" not in repr(clf)


def test_a_list_a_frame_folder_and_a_tensor(site, video, tmp_path):
    from afnet.data.decoding import open_reader

    folder = tmp_path / "frames"
    folder.mkdir()
    with open_reader(video) as reader:
        decoded = reader.get_frames(list(range(len(reader))))
    from PIL import Image

    for i, frame in enumerate(decoded):
        Image.fromarray(frame.permute(1, 2, 0).numpy()).save(folder / f"{i + 1:05d}.jpg")
    clf = afnet.VideoClassifier.from_pretrained(site / "pkg")
    results = clf([video, str(folder)], top_k=1)
    assert [r.top[0]["label"] for r in results] == ["stir", "stir"] and len(results[0].top) == 1
    from_tensor = clf(decoded)
    assert from_tensor.path is None and from_tensor.top[0]["label"] == "stir"
    # the same frames sampled and transformed as from the file: the same answer
    assert from_tensor.kept == results[0].kept
    assert from_tensor.top[0]["score"] == pytest.approx(results[0].top[0]["score"], abs=1e-6)
    with pytest.raises(ValueError, match="uint8 \\(N, 3, H, W\\)"):
        clf(decoded.float())
    with pytest.raises(ValueError, match="nope.mp4"):
        clf(str(tmp_path / "nope.mp4"))


def test_a_package_from_the_hub_cache(site, video, tmp_path, monkeypatch):
    """hf-hub:org/repo: the package in a hub cache laid out as huggingface_hub lays it out, read offline."""
    from tests.test_weights import make_hub_cache

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    make_hub_cache(tmp_path / "hub", "org/af-small",
                   {name: (site / "pkg" / name).read_bytes() for name in ("config.json", "model.safetensors")})
    assert afnet.pipeline("hf-hub:org/af-small")(video).top[0]["label"] == "stir"
