"""``afnet serve``: a local web page running one loaded model on uploaded videos or video paths.

::

    GET  /              the page (serve_page.html): upload a video or give a path, then the top-k,
                        GFLOPs, latency and the explain figure (frames, and regions, each focal block computed)
    GET  /docs          FastAPI's OpenAPI page of the JSON API (/openapi.json)
    GET  /api/model     the model: architecture, frames, input size, classes, navigation points, source
    POST /api/predict   multipart form: ``video`` (a file) or ``path`` (a video under the video root)
                        -> the ``afnet predict --json`` object, plus ``figure`` (PNG data URL) and
                        ``masks_text`` (per point, ``#`` kept / ``.`` skipped)
                        bad input -> 400 (413: too large) with ``{"error": "..."}`` naming the file

The model is loaded once (an :class:`InferenceModel`, from a checkpoint or an ONNX export) and
every request goes through the inference path of ``afnet explain``: :func:`explain_video` (the
evaluation decoding, the model call, GFLOPs) and :func:`draw_explanation`. Requests run one at
a time on the model (a lock), so each latency is the model's alone. A request that fails, for
whatever reason, is answered with its message; the server keeps running.
"""
from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import replace
from importlib import resources

from afnet._imports import require
from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT, DecodeError
from afnet.inference.explain import draw_explanation, explain_video
from afnet.inference.model import InferenceModel
from afnet.inference.report import mask_string, prediction_to_json

fastapi = require("fastapi", "afnet serve")
require("python_multipart", "afnet serve (uploads)")
from fastapi import File, Form, UploadFile  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse  # noqa: E402

log = logging.getLogger("afnet.serve")
_CHUNK = 1 << 20


class BadRequest(Exception):
    """A request the server answers with ``status`` and the message (the server goes on)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def page_html() -> str:
    """The page served at ``/``."""
    return resources.files("afnet.inference").joinpath("serve_page.html").read_text(encoding="utf-8")


def model_description(im: InferenceModel) -> dict:
    """What ``/api/model`` returns (and the page's header shows)."""
    c = im.config
    model = im.model
    return {"arch": im.arch, "source": im.source, "checkpoint": os.path.basename(im.checkpoint),
            "frames": im.num_frames, "input_size": c.input_size, "preset": c.name, "classes": im.num_classes,
            "points": im.points, "spatial": bool(model.spatial), "selection": model.selection,
            "ratio": model.ratio, "device": str(im.device), "compile": im.compile_mode}


def resolve_video_path(path: str, root: str) -> str:
    """``path`` (relative to ``root``, or absolute) as a real path inside ``root``; BadRequest
    when it leaves the root or does not exist."""
    root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([root, full]) != root:
        raise BadRequest(f"{path}: outside the server's video root {root}")
    if not os.path.exists(full):
        raise BadRequest(f"{path}: no such video under the server's video root {root}")
    return full


def analyse(im: InferenceModel, path: str, shown_as: str, *, top_k: int = 5, backend: str = "pyav",
            timeout: float | None = DEFAULT_DECODE_TIMEOUT) -> dict:
    """Run ``path`` through ``explain_video`` and draw its figure; the JSON object of the
    page (``shown_as``: the name the video is reported under). BadRequest when it cannot be read."""
    try:
        explanation = explain_video(path, im, top_k=top_k, backend=backend, timeout=timeout)
    except DecodeError as exc:
        reason = str(exc)
        reason = reason[len(path) + 2:] if reason.startswith(path + ": ") else reason
        raise BadRequest(f"{shown_as}: not a readable video ({reason})") from None
    explanation.prediction = replace(explanation.prediction, path=shown_as)
    png = io.BytesIO()
    draw_explanation(explanation, png)
    p = explanation.prediction
    row = prediction_to_json(p)
    row["figure"] = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
    row["masks_text"] = [f"{name}  {mask_string(mask)}  {sum(mask)}/{len(mask)}"
                         for name, mask in zip(p.points, p.masks)]
    return row


def save_upload(upload, folder: str, max_bytes: int) -> str:
    """Copy an uploaded file into ``folder`` (keeping its extension: decoders look at it),
    at most ``max_bytes``; BadRequest for an empty or too large file."""
    name = os.path.basename(upload.filename or "upload")
    target = os.path.join(folder, "upload" + os.path.splitext(name)[1].lower()[:16])
    size = 0
    with open(target, "wb") as f:
        while chunk := upload.file.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise BadRequest(f"{name}: larger than the server's limit of {max_bytes / 2**20:g} MB", 413)
            f.write(chunk)
    if size == 0:
        raise BadRequest(f"{name}: the uploaded file is empty")
    return target


def create_app(im: InferenceModel, *, video_root: str = ".", max_upload_mb: float = 200.0, top_k: int = 5,
               backend: str = "pyav", timeout: float | None = DEFAULT_DECODE_TIMEOUT):
    """The FastAPI application serving ``im`` (loaded once, shared by every request)."""
    from afnet import __version__

    # /docs: FastAPI's OpenAPI page of the JSON API (Swagger UI; its scripts come from a CDN)
    app = fastapi.FastAPI(title="afnet", version=__version__, docs_url="/docs", redoc_url=None,
                          description="The model behind the page: GET /api/model, POST /api/predict.")
    app.state.inference_model = im
    app.state.requests = 0
    lock = threading.Lock()
    max_bytes = int(max_upload_mb * 2**20)

    @app.exception_handler(BadRequest)
    async def bad_request(request, exc: BadRequest):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page_html()

    @app.get("/api/model")
    def model():
        return model_description(im)

    @app.post("/api/predict")
    def predict(video: UploadFile | None = File(None), path: str | None = Form(None)):
        has_file = video is not None and bool(video.filename)
        path = (path or "").strip()
        if has_file == bool(path):
            raise BadRequest("send a video file (field 'video') or a path (field 'path'), one of the two")
        folder = tempfile.mkdtemp(prefix="afnet-serve-")
        try:
            if has_file:
                shown_as = os.path.basename(video.filename)
                local = save_upload(video, folder, max_bytes)
            else:
                shown_as, local = path, resolve_video_path(path, video_root)
            with lock:
                app.state.requests += 1
                try:
                    return analyse(im, local, shown_as, top_k=top_k, backend=backend, timeout=timeout)
                except BadRequest:
                    raise
                except Exception as exc:  # noqa: BLE001 - one request's failure; the server goes on
                    log.exception("afnet serve: %s failed", shown_as)
                    raise BadRequest(f"{shown_as}: {type(exc).__name__}: {exc}", 500) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return app
