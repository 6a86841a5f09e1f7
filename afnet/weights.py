"""Where weights come from: one resolver from a source to a local file or package folder.

    path/to/best.ckpt, path/to/package/          as given (a file, or a folder of afnet.package)
    https://host/AF-ResNet50.pth.tar[#sha256=HEX] downloaded once into the cache, hash checked
    https://host/package/[#sha256=HEX]           a package: its config.json and model.safetensors
                                                 (the hash is the weights file's)
    hf-hub:org/repo[/file]                       a Hugging Face hub cache entry, read offline:
                                                 the snapshot of refs/main (a package), or its file

The download cache is ``$AFNET_CACHE`` (default ``~/.cache/afnet``), one folder per URL; a
file is downloaded to a temporary name and renamed when complete, so an interrupted download
never passes for a cached one. The hub cache is where the ``huggingface_hub`` library puts it
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``); that library is
not needed to read it. Only the standard library is imported here.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HUB_PREFIX = "hf-hub:"
URL_SCHEMES = ("https://", "http://")
ACCEPTED = "a file or package folder, an http(s):// URL, or hf-hub:org/repo[/file]"


class WeightsError(ValueError):
    """A weights source that cannot be fetched or fails its hash check; the message names it."""


def resolve(source: str | os.PathLike) -> Path:
    """The local file or package folder of ``source`` (see the module docstring); raises
    FileNotFoundError or :class:`WeightsError` naming the source."""
    text = str(source)
    if text.startswith(URL_SCHEMES):
        return download(text)
    if text.startswith(HUB_PREFIX):
        return hub_path(text[len(HUB_PREFIX):])
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"weights not found: {text} (accepted: {ACCEPTED})")
    return path


def is_remote(source: str | os.PathLike) -> bool:
    return str(source).startswith((*URL_SCHEMES, HUB_PREFIX))


# ----------------------------------------------------------------------------- URLs
def cache_dir() -> Path:
    return Path(os.environ.get("AFNET_CACHE") or "~/.cache/afnet").expanduser()


def download(url: str) -> Path:
    """The cached copy of ``url`` (downloaded on first use); a URL ending in ``/`` is a package
    folder. ``#sha256=HEX`` checks the file (a package's weights file)."""
    from afnet.package import PACKAGE_FILES, WEIGHTS_FILE

    address, _, fragment = url.partition("#")
    expected = None
    if fragment:
        match = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", fragment)
        if match is None:
            raise WeightsError(f"{url}: the fragment #{fragment} is not #sha256=<64 hex digits>")
        expected = match.group(1).lower()
    folder = cache_dir() / hashlib.sha256(address.encode()).hexdigest()[:16]
    if address.endswith("/"):
        for name in PACKAGE_FILES:
            _fetch(address + name, folder / name, expected if name == WEIGHTS_FILE else None)
        return folder
    name = urllib.parse.unquote(urllib.parse.urlsplit(address).path.rstrip("/").rpartition("/")[2]) or "weights"
    return _fetch(address, folder / name, expected)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, expected: str | None) -> Path:
    if target.is_file() and (expected is None or _sha256(target) == expected):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
        except urllib.error.HTTPError as exc:
            raise WeightsError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise WeightsError(f"{url}: cannot download: {getattr(exc, 'reason', exc)}") from None
        if expected is not None and (actual := _sha256(tmp)) != expected:
            raise WeightsError(f"{url}: sha256 {actual} does not match the expected {expected}")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


# ----------------------------------------------------------------------------- Hugging Face hub cache
def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or "~/.cache/huggingface"
    return Path(home).expanduser() / "hub"


def hub_path(spec: str) -> Path:
    """``org/repo[/file]`` in the hub cache: ``models--org--repo/snapshots/<refs/main>/[file]``."""
    parts = spec.strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise WeightsError(f"{HUB_PREFIX}{spec}: expected {HUB_PREFIX}org/repo or {HUB_PREFIX}org/repo/file")
    repo, file = "/".join(parts[:2]), "/".join(parts[2:])
    repo_dir = hub_cache() / f"models--{parts[0]}--{parts[1]}"
    ref = repo_dir / "refs" / "main"
    if not ref.is_file():
        raise FileNotFoundError(f"{HUB_PREFIX}{spec}: {repo} is not in the Hugging Face cache {hub_cache()} "
                                f"(no {ref}); read offline: download it first (huggingface-cli download {repo})")
    path = repo_dir / "snapshots" / ref.read_text().strip() / file
    if not path.exists():
        raise FileNotFoundError(f"{HUB_PREFIX}{spec}: no {file or 'snapshot'} at {path}")
    return path
