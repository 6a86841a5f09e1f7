"""Weights sources (afnet.weights): local paths, http(s) URLs downloaded once into the cache
(a real HTTP server on the loopback address), and the Hugging Face hub cache read offline."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from afnet.weights import WeightsError, resolve


@contextlib.contextmanager
def serve_folder(folder: Path):
    """An HTTP server on 127.0.0.1 serving ``folder``; yields (base URL, list of request paths)."""
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the base class's name
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AFNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_local_path_and_missing(tmp_path):
    f = tmp_path / "w.pt"
    f.write_bytes(b"x")
    assert resolve(f) == f and resolve(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError, match="weights not found: .*nope.pt .*hf-hub:org/repo"):
        resolve(tmp_path / "nope.pt")


def test_url_downloaded_once_and_hash_checked(tmp_path, cache):
    site = tmp_path / "site"
    site.mkdir()
    payload = b"weights" * 1000
    (site / "w.pth.tar").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    with serve_folder(site) as (base, requests):
        first = resolve(f"{base}w.pth.tar#sha256={sha}")
        second = resolve(f"{base}w.pth.tar#sha256={sha}")
        assert first == second and first.read_bytes() == payload and first.is_relative_to(cache)
        assert requests == ["/w.pth.tar"]             # the second call read the cache
        assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]   # no temporary left

        with pytest.raises(WeightsError, match=rf"{base}other.pt: sha256 [0-9a-f]{{64}} does not match the "
                                               rf"expected {'0' * 64}"):
            (site / "other.pt").write_bytes(b"other")
            resolve(f"{base}other.pt#sha256={'0' * 64}")
        assert not any(p.name.startswith("other") for p in cache.rglob("*"))   # a bad file is not cached
        with pytest.raises(WeightsError, match=rf"{base}missing.pt: HTTP 404"):
            resolve(f"{base}missing.pt")
        with pytest.raises(WeightsError, match="not #sha256="):
            resolve(f"{base}w.pth.tar#md5=abc")


def test_url_of_a_package_folder(tmp_path, cache):
    site = tmp_path / "site" / "pkg"
    site.mkdir(parents=True)
    (site / "config.json").write_text("{}")
    (site / "model.safetensors").write_bytes(b"st")
    with serve_folder(tmp_path / "site") as (base, requests):
        folder = resolve(f"{base}pkg/")
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
        resolve(f"{base}pkg/")
        assert sorted(requests) == ["/pkg/config.json", "/pkg/model.safetensors"]


def make_hub_cache(root: Path, repo: str, files: dict[str, bytes], revision: str = "a1b2c3") -> Path:
    """A hub cache entry laid out as huggingface_hub lays it out: blobs by hash, snapshot files
    linking to them, refs/main naming the snapshot."""
    org, name = repo.split("/")
    entry = root / f"models--{org}--{name}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(revision)
    snapshot = entry / "snapshots" / revision
    for file, data in files.items():
        blob = entry / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        (snapshot / file).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / file).symlink_to(blob)
    return snapshot


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME"])
def test_hub_cache_offline(tmp_path, monkeypatch, variable):
    root = tmp_path / "hf" / ("hub" if variable == "HF_HOME" else "")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv(variable, str(tmp_path / "hf") if variable == "HF_HOME" else str(root))
    snapshot = make_hub_cache(root, "org/afnet-small", {"config.json": b"{}", "ckpt/best.ckpt": b"w"})
    assert resolve("hf-hub:org/afnet-small") == snapshot
    assert resolve("hf-hub:org/afnet-small/ckpt/best.ckpt").read_bytes() == b"w"
    with pytest.raises(FileNotFoundError, match="org/other is not in the Hugging Face cache"):
        resolve("hf-hub:org/other")
    with pytest.raises(FileNotFoundError, match="no nope.pt"):
        resolve("hf-hub:org/afnet-small/nope.pt")
    with pytest.raises(WeightsError, match="expected hf-hub:org/repo"):
        resolve("hf-hub:justaname")
