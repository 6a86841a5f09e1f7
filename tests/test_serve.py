"""``afnet serve``: the page, the JSON API, bad uploads, and the page in a real headless Chromium."""
from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

import afnet
from afnet.data.limits import DecodeLimits
from afnet.inference import load_model_for_inference
from tests.helpers import randomize, write_video

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from afnet.inference.serve import create_app  # noqa: E402

T, K = 8, 6
NAMES = ["circle", "square", "triangle", "cross", "ring", "bar"]
CHROMIUM = os.environ.get("AFNET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """af_resnet_small (T=8, 6 named classes) whose navigation skips some frames, read with the
    synthetic preset at 48 pixels."""
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    model = randomize(afnet.create_model("af_resnet_small", num_classes=K, num_frames=T), seed=1)
    afnet.save_checkpoint(path, model, class_names=NAMES, config={"data": {"preset": "synthetic", "input_size": 48}})
    return str(path)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The server's video root: a clip, a clip in a subfolder, a file that is no video."""
    folder = tmp_path_factory.mktemp("videos")
    os.makedirs(folder / "sub")
    write_video(folder / "clip.mp4", 20, gop=6)
    write_video(folder / "sub" / "other.mkv", 12)
    (folder / "notes.txt").write_text("not a video")
    return folder


@pytest.fixture(scope="module")
def client(ckpt, root):
    app = create_app(load_model_for_inference(ckpt), video_root=str(root), max_upload_mb=1)
    with TestClient(app) as c:
        yield c


def _upload(client, path, name=None):
    with open(path, "rb") as f:
        return client.post("/api/predict", files={"video": (name or os.path.basename(path), f, "video/mp4")})


def test_page_and_model(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="video"' in page.text and 'id="path"' in page.text
    model = client.get("/api/model").json()
    assert model == {"arch": "af_resnet_small", "source": "afnet", "checkpoint": "small.pt", "frames": T,
                     "input_size": 48, "preset": "synthetic", "classes": K,
                     "points": ["layer1.0", "layer2.0", "layer3.0"], "spatial": False, "selection": "navigation",
                     "ratio": None, "device": "cpu", "compile": None}


def test_upload_and_path_give_the_prediction_and_figure(client, root):
    got = _upload(client, root / "clip.mp4")
    assert got.status_code == 200, got.text
    p = got.json()
    assert p["path"] == "clip.mp4" and p["ok"]
    assert [t["name"] for t in p["top"]] and len(p["top"]) == 5
    assert {t["name"] for t in p["top"]} <= set(NAMES)
    assert len(p["masks"]) == 3 and all(len(m) == T for m in p["masks"])
    assert p["gflops"] > 0 and p["latency_ms"] > 0
    assert p["masks_text"][0].startswith("layer1.0  ") and p["masks_text"][0].endswith(f"{sum(p['masks'][0])}/{T}")
    png = base64.b64decode(p["figure"].split(",", 1)[1])
    assert p["figure"].startswith("data:image/png;base64,") and png[:8] == b"\x89PNG\r\n\x1a\n"
    by_path = client.post("/api/predict", data={"path": "clip.mp4"}).json()
    assert by_path["path"] == "clip.mp4"
    assert by_path["top"] == p["top"] and by_path["masks"] == p["masks"]   # the same video, the same answer


@pytest.mark.parametrize("case", ["garbage", "empty", "nothing", "both", "outside", "missing", "not_a_video",
                                  "too_large", "huge"])
def test_bad_requests_get_a_clear_message_and_the_server_goes_on(client, root, tmp_path, case):
    clip = root / "clip.mp4"
    if case == "garbage":
        bad = tmp_path / "holiday.mp4"
        bad.write_bytes(b"\x00\x01 this is not a video " * 100)
        got, status, words = _upload(client, bad), 422, "holiday.mp4: not a readable video"
    elif case == "empty":
        (tmp_path / "empty.mp4").write_bytes(b"")
        got, status, words = _upload(client, tmp_path / "empty.mp4"), 400, "empty.mp4: the uploaded file is empty"
    elif case == "nothing":
        got, status, words = client.post("/api/predict", data={}), 400, "send a video file"
    elif case == "both":
        with open(clip, "rb") as f:
            got = client.post("/api/predict", files={"video": ("clip.mp4", f)}, data={"path": "clip.mp4"})
        status, words = 400, "one of the two"
    elif case == "outside":
        got = client.post("/api/predict", data={"path": "../../etc/passwd"})
        status, words = 400, "outside the server's video root"
    elif case == "missing":
        got, status, words = client.post("/api/predict", data={"path": "nope.mp4"}), 400, "nope.mp4: no such video"
    elif case == "not_a_video":
        got = client.post("/api/predict", data={"path": "notes.txt"})
        status, words = 422, "notes.txt: not a readable video (not a video"
    elif case == "too_large":
        big = tmp_path / "big.mp4"
        big.write_bytes(b"\x00" * (2**20 + 1000))   # within the form's slack: refused while copied, named
        got, status, words = _upload(client, big), 413, "big.mp4: larger than the server's limit of 1 MB"
    else:
        huge = tmp_path / "huge.mp4"
        huge.write_bytes(b"\x00" * (3 * 2**20))     # refused from its Content-Length, never read
        got, status, words = _upload(client, huge), 413, "larger than the server's upload limit of 1 MB"
    assert got.status_code == status and words in got.json()["error"], got.text
    assert "afnet-serve-" not in got.text and tempfile.gettempdir() not in got.text and str(root) not in got.text
    after = _upload(client, clip)   # the server still answers
    assert after.status_code == 200 and after.json()["ok"]


@pytest.fixture
def strict(ckpt, root, tmp_path, monkeypatch):
    """A server with a 2000-pixel frame limit and room for one request, its temporary folder
    in ``tmp_path`` (so that what it leaves there can be counted)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    app = create_app(load_model_for_inference(ckpt), video_root=str(root), max_upload_mb=1,
                     limits=DecodeLimits(max_frame_pixels=2000), max_queue=1)
    with TestClient(app) as c:
        yield c


def test_limits_get_422_naming_the_client_file_and_temp_files_go(strict, root, tmp_path):
    got = _upload(strict, root / "clip.mp4", name="my holiday.mp4")
    assert got.status_code == 422
    error = got.json()["error"]
    assert error.startswith("my holiday.mp4: not a readable video (frame of 64x48 = 3072 pixels is over the limit "
                            "of 2000 pixels per frame"), error
    assert str(tmp_path) not in error and "upload.mp4" not in error
    (tmp_path / "list.txt").write_text("clips/a.mp4 30 2\n")
    got = _upload(strict, tmp_path / "list.txt")
    assert got.status_code == 422 and "list.txt: not a readable video (not a video" in got.json()["error"]
    assert "did you mean --list?" in got.json()["error"] and str(tmp_path) not in got.json()["error"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("afnet-serve-")]


def test_a_body_without_content_length_is_cut_at_the_limit(strict, root):
    """A chunked upload (no Content-Length) is refused with 413 once its body passes the limit."""
    boundary = "afnetboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"big.mp4\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode()
    def body():
        yield head
        for _ in range(3):           # 3 MB against a 1 MB limit
            yield b"\0" * 2**20
        yield f"\r\n--{boundary}--\r\n".encode()

    got = strict.post("/api/predict", content=body(),
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert got.status_code == 413 and "larger than the server's upload limit of 1 MB" in got.json()["error"]
    assert _upload(strict, root / "clip.mp4").status_code == 422   # the server goes on


def test_a_full_queue_gets_503_with_retry_after(strict, root):
    strict.app.state.admitted = 1   # one request waiting for the model or running on it
    try:
        busy = _upload(strict, root / "clip.mp4")
    finally:
        strict.app.state.admitted = 0
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert "the server is busy" in busy.json()["error"]
    assert _upload(strict, root / "clip.mp4").status_code == 422   # admitted again (and over its pixel limit)
    assert strict.app.state.admitted == 0


def test_model_loaded_once(client, root):
    im = client.app.state.inference_model
    before = client.app.state.requests
    for _ in range(2):
        assert client.post("/api/predict", data={"path": "sub/other.mkv"}).status_code == 200
    assert client.app.state.inference_model is im and client.app.state.requests == before + 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"afnet serve exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"afnet serve did not answer {url} in {timeout:.0f} s")


@pytest.mark.slow
def test_page_in_headless_chromium(ckpt, root, tmp_path):
    """The CLI's server, driven by Playwright in the system's Chromium: upload a synthetic
    clip, see the top-5 and the figure; a bad upload shows its message; a screenshot is taken
    (set AFNET_SCREENSHOT=docs/img/serve_page.png to keep it)."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install 'afnet[test]')")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/run does)")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "afnet.cli", "serve", "--checkpoint", ckpt, "--port", str(port),
                             "--video-root", str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url + "api/model", proc)
        bad = tmp_path / "broken.mp4"
        bad.write_bytes(b"not a video at all" * 50)
        with sync_api.sync_playwright() as pw:
            # Playwright starts it with a fresh profile folder of its own (a new --user-data-dir)
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(url)
                page.wait_for_function("document.getElementById('model').textContent.includes('af_resnet_small')")
                page.set_input_files("#video", str(bad))
                page.click("#run")
                page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=60_000)
                assert "broken.mp4: not a readable video" in page.inner_text("#error")
                page.set_input_files("#video", str(root / "clip.mp4"))
                page.click("#run")
                page.wait_for_selector("#result", state="visible", timeout=60_000)
                assert page.inner_text("#title") == "clip.mp4" and page.inner_text("#error") == ""
                rows = page.locator("#top tbody tr")
                assert rows.count() == 5 and any(n in rows.nth(0).inner_text() for n in NAMES)
                assert "GFLOPs" in page.inner_text("#stats") and "ms model call" in page.inner_text("#stats")
                masks = page.inner_text("#masks").splitlines()
                assert [m.split()[0] for m in masks] == ["layer1.0", "layer2.0", "layer3.0"]
                page.wait_for_function("document.getElementById('figure').naturalWidth > 0")
                shot = tmp_path / "serve_page.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                if os.environ.get("AFNET_SCREENSHOT"):
                    shutil.copy(shot, os.environ["AFNET_SCREENSHOT"])
            finally:
                browser.close()
        assert proc.poll() is None   # still serving after the bad upload
    finally:
        proc.terminate()
        proc.wait(timeout=30)
