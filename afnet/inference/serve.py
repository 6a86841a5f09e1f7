"""``afnet serve``: a local web page running one loaded model on uploaded videos or video paths.

::

    GET  /              the page (serve_page.html): upload a video or give a path, then the top-k,
                        GFLOPs, latency and the explain figure (frames, and regions, each focal block computed)
    GET  /docs          FastAPI's OpenAPI page of the JSON API (/openapi.json)
    GET  /api/model     the model: architecture, frames, input size, classes, navigation points, source
    POST /api/predict   multipart form: ``video`` (a file) or ``path`` (a video under the video root)
                        -> the ``afnet predict --json`` object, plus ``figure`` (PNG data URL) and
                        ``masks_text`` (per point, ``#`` kept / ``.`` skipped)
                        errors: ``{"error": "..."}`` naming the file as the client knows it:
                        400 a malformed request, 413 an upload over ``max_upload_mb`` (refused from
                        its Content-Length, or as soon as its body passes the limit), 422 a file
                        that is not a video or breaks a decode limit (frame pixels, frames,
                        seconds: :class:`DecodeLimits`), 503 with ``Retry-After`` when
                        ``max_queue`` requests are already admitted (:class:`Admission`: upload
                        being read, waiting for the model or running on it), before the upload
                        is parsed

The model is loaded once (an :class:`InferenceModel`, from a checkpoint or an ONNX export) and
every request goes through the inference path of ``afnet explain``: :func:`explain_video` (the
evaluation decoding, the model call, GFLOPs) and :func:`draw_explanation`. Requests run one at
a time on the model, in one thread of their own, so each latency is the model's alone and the
memory one request decoded and computed in is reused by the next (run from the web framework's
many request threads, each thread's allocator arena kept its own peak: the server's RSS grew by
13% between its first and last 100 requests in ``benchmarks/bench_serve.py``, 0.7% now); at most
``max_queue`` are admitted (waiting or running), the others are told to retry. A request that fails, for
whatever reason, is answered with its message, in which the server's own paths (the upload's
temporary copy, the video root) are replaced by the name the client gave; the server keeps
running. Each upload is copied into a folder of its own under the server's temporary folder,
removed when the request ends, whatever happened.
"""
from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib import resources

from afnet._imports import require
from afnet.data.decoding import DEFAULT_DECODE_TIMEOUT, DecodeError
from afnet.data.limits import DEFAULT_LIMITS, DecodeLimits
from afnet.inference.explain import draw_explanation, explain_video
from afnet.inference.model import InferenceModel
from afnet.inference.report import mask_string, prediction_to_json

fastapi = require("fastapi", "afnet serve")
require("python_multipart", "afnet serve (uploads)")
from fastapi import File, Form, UploadFile  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

log = logging.getLogger("afnet.serve")
_CHUNK = 1 << 20


class BadRequest(Exception):
    """A request the server answers with ``status`` and the message (the server goes on)."""

    def __init__(self, message: str, status: int = 400, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def client_message(message: str, local: str, shown_as: str) -> str:
    """``message`` with the server's path ``local`` (and its folder) written as ``shown_as``,
    the name the client knows: a message never shows a client the server's files."""
    message = message.replace(local, shown_as)
    folder = os.path.dirname(local)
    return message.replace(folder + os.sep, "").replace(folder, "") if folder else message


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
        raise BadRequest(f"{path}: outside the server's video root")
    if not os.path.exists(full):
        raise BadRequest(f"{path}: no such video under the server's video root")
    return full


def analyse(im: InferenceModel, path: str, shown_as: str, *, top_k: int = 5, backend: str = "pyav",
            timeout: float | None = DEFAULT_DECODE_TIMEOUT, limits: DecodeLimits = DEFAULT_LIMITS) -> dict:
    """Run ``path`` through ``explain_video`` and draw its figure; the JSON object of the
    page (``shown_as``: the name the video is reported under). BadRequest (422) when it cannot
    be read, is not a video, or breaks ``limits``."""
    try:
        explanation = explain_video(path, im, top_k=top_k, backend=backend, timeout=timeout, limits=limits)
    except DecodeError as exc:
        reason = str(exc)
        reason = reason[len(path) + 2:] if reason.startswith(path + ": ") else reason
        raise BadRequest(f"{shown_as}: not a readable video ({client_message(reason, path, shown_as)})",
                         422) from None
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


class UploadLimit:
    """ASGI middleware: a ``POST`` whose body is larger than ``max_bytes`` (plus room for the
    multipart form around the file) gets 413 before it is read, from its Content-Length, or as
    soon as a body sent without one passes the limit; nothing of it is stored."""

    def __init__(self, app, max_bytes: int, slack: int = 1 << 16):
        self.app, self.max_bytes, self.limit = app, max_bytes, max_bytes + slack

    def _message(self) -> str:
        return f"the request is larger than the server's upload limit of {self.max_bytes / 2**20:g} MB"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await JSONResponse({"error": self._message()}, status_code=413)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:   # FastAPI passes an HTTPException raised while it reads the body on
                    raise fastapi.HTTPException(413, self._message())
            return message

        return await self.app(scope, counted, send)


class Admission:
    """ASGI middleware: at most ``max_queue`` ``POST /api/predict`` requests admitted at once
    (their upload being read, waiting for the model or running on it); one more gets 503 with
    ``Retry-After`` before its upload is parsed or stored (its body is read and dropped, so that
    the client, still sending, reads the answer). The count lives in ``state.admitted``, changed
    only on the event loop."""

    def __init__(self, app, state, max_queue: int, retry_after: int):
        self.app, self.state, self.max_queue, self.retry_after = app, state, max_queue, retry_after

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != "/api/predict":
            return await self.app(scope, receive, send)
        if self.state.admitted >= self.max_queue:
            with contextlib.suppress(Exception):   # drop the body (a too large one ends the reading)
                while (await receive()).get("more_body"):
                    pass
            busy = JSONResponse({"error": f"the server is busy ({self.max_queue} requests waiting for the model or "
                                          f"running on it); retry in {self.retry_after} s"},
                                status_code=503, headers={"Retry-After": str(self.retry_after)})
            return await busy(scope, receive, send)
        self.state.admitted += 1
        admitted = True

        def leave() -> None:
            nonlocal admitted
            if admitted:
                admitted = False
                self.state.admitted -= 1

        async def answer(message):   # the place is free before the client can read the answer and ask again
            if message["type"] == "http.response.start":
                leave()
            await send(message)

        try:
            return await self.app(scope, receive, answer)
        finally:
            leave()


def create_app(im: InferenceModel, *, video_root: str = ".", max_upload_mb: float = 200.0, top_k: int = 5,
               backend: str = "pyav", timeout: float | None = DEFAULT_DECODE_TIMEOUT,
               limits: DecodeLimits = DEFAULT_LIMITS, max_queue: int = 16, retry_after: int = 1):
    """The FastAPI application serving ``im`` (loaded once, shared by every request).

    ``max_upload_mb``: the largest upload (413 beyond). ``limits``: what one video may decode
    (422 beyond). ``max_queue``: requests admitted at once, waiting for the model or running on
    it; one more gets 503 with ``Retry-After: retry_after`` seconds."""
    if max_queue < 1:
        raise ValueError(f"max_queue must be positive, got {max_queue}")
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="afnet-serve-model")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        model_thread.shutdown(wait=False, cancel_futures=True)

    from afnet import __version__

    # /docs: FastAPI's OpenAPI page of the JSON API (Swagger UI; its scripts come from a CDN)
    app = fastapi.FastAPI(title="afnet", version=__version__, docs_url="/docs", redoc_url=None, lifespan=lifespan,
                          description="The model behind the page: GET /api/model, POST /api/predict.")
    app.state.inference_model = im
    app.state.requests = 0
    app.state.admitted = 0
    max_bytes = int(max_upload_mb * 2**20)
    app.add_middleware(Admission, state=app.state, max_queue=max_queue, retry_after=retry_after)
    app.add_middleware(UploadLimit, max_bytes=max_bytes)   # added last: runs first

    @app.exception_handler(BadRequest)
    async def bad_request(request, exc: BadRequest):
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page_html()

    @app.get("/api/model")
    def model():
        return model_description(im)

    def on_the_model(local: str, shown_as: str) -> dict:
        """One request's work on the model, in the model's thread."""
        app.state.requests += 1
        try:
            return analyse(im, local, shown_as, top_k=top_k, backend=backend, timeout=timeout, limits=limits)
        except BadRequest:
            raise
        except Exception as exc:  # noqa: BLE001 - one request's failure; the server goes on
            log.exception("afnet serve: %s failed", shown_as)
            message = client_message(f"{type(exc).__name__}: {exc}", local, shown_as)
            raise BadRequest(f"{shown_as}: {message}", 500) from None

    @app.post("/api/predict")
    def predict(video: UploadFile | None = File(None), path: str | None = Form(None)):
        has_file = video is not None and bool(video.filename)
        path = (path or "").strip()
        if has_file == bool(path):
            raise BadRequest("send a video file (field 'video') or a path (field 'path'), one of the two")
        folder = tempfile.mkdtemp(prefix="afnet-serve-")
        shown_as, local = (os.path.basename(video.filename) if has_file else path), folder
        try:
            if has_file:
                local = save_upload(video, folder, max_bytes)
            else:
                local = resolve_video_path(path, video_root)
            return model_thread.submit(on_the_model, local, shown_as).result()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return app
