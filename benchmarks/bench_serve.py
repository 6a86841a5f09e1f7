"""``afnet serve`` under load: concurrent clients uploading good and corrupt videos on the loopback.

Protocol (issue #23): ``afnet serve`` is started on 127.0.0.1 (a free port) with a small random
checkpoint (af_resnet_small, T=8, 4 classes, 48 pixels), ``--threads 1``, its ``TMPDIR`` a fresh
folder of its own (so every temporary file it or its web framework makes is counted there).
``--clients`` threads (default 16) send ``--requests`` uploads (default 500) between them, each
a multipart POST to /api/predict, cycling through the kinds below (a fixed shuffled order):

    good        an H.264 clip, 64x48, 20 frames                          -> 200
    garbage     random bytes named .mp4                                 -> 422
    truncated   the good clip cut in half                               -> 200 or 422
    text        a list file (``clips/a.mp4 30 2``) named train.txt       -> 422, "did you mean --list?"
    png_bomb    a PNG header claiming 100000x100000 (a few hundred bytes) -> 422, pixel limit
    video_8k    an H.264 video of 7680x4320 frames                      -> 422, pixel limit

Reported: latency p50/p95 (client-side, per request, all kinds), throughput (requests / wall
time), the count of each status code, any 5xx other than a deliberate 503, the server's RSS
(``VmRSS`` of its process) before the first request, after the first 100 and after the last
100, and the files left in its temporary folder after the last response. The server is stopped
(SIGINT) at the end. Requests never leave 127.0.0.1. Temporary files: everything under the server's
TMPDIR after the last response, except the compile-cache folder torch makes there (torchinductor_<user>).

Usage: python benchmarks/bench_serve.py [--requests 500] [--clients 16] [--max-queue 16] [--work DIR]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from bench_bombs import h264_video, small_checkpoint  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def make_inputs(folder: str) -> dict[str, tuple[str, bytes]]:
    """kind -> (file name sent, bytes)."""
    good = h264_video(os.path.join(folder, "good.mp4"), 20, size=(48, 64))
    data = open(good, "rb").read()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))
    big = h264_video(os.path.join(folder, "serve_8k.mp4"), frames=2)
    return {"good": ("holiday.mp4", data),
            "garbage": ("garbage.mp4", random.Random(0).randbytes(50_000)),
            "truncated": ("cut.mp4", data[:len(data) // 2]),
            "text": ("train.txt", b"clips/a.mp4 30 2\nclips/b.mp4 12 0\n"),
            "png_bomb": ("bomb.png", png),
            "video_8k": ("eight_k.mp4", open(big, "rb").read())}


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(url: str, name: str, data: bytes) -> tuple[int, float, str]:
    body, content_type = multipart(name, data)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        status, text = 0, f"{type(exc).__name__}: {exc}"
    return status, time.perf_counter() - start, text


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_under(folder: str) -> list[str]:
    return [os.path.join(root, name) for root, dirs, files in os.walk(folder) for name in files + dirs]


def main() -> None:
    from afnet.runtime import cpu_description

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--max-queue", type=int, default=16)
    p.add_argument("--work", help="folder for the inputs (default: a temporary folder, removed)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="afnet-bench-serve-")
    server_tmp = tempfile.mkdtemp(prefix="afnet-bench-serve-tmp-")
    server = None
    try:
        ckpt = small_checkpoint(work)
        inputs = make_inputs(work)
        kinds = list(inputs)
        order = [kinds[i % len(kinds)] for i in range(args.requests)]
        random.Random(1).shuffle(order)
        port = free_port()
        env = {**os.environ, "PYTHONPATH": REPO, "TMPDIR": server_tmp,
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        server = subprocess.Popen([sys.executable, "-m", "afnet.cli", "serve", "--checkpoint", ckpt, "--host", "127.0.0.1",
                                   "--port", str(port), "--threads", "1", "--max-queue", str(args.max_queue),
                                   "--video-root", work], env=env, stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(base + "/api/model", timeout=5).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"afnet serve did not start: {server.stderr.read()[-2000:]}") from None
                time.sleep(0.3)
        rss = {"before": rss_mb(server.pid)}
        window = min(100, args.requests // 2)   # "first 100" and "last 100" (fewer in a short run)
        done = 0
        lock = threading.Lock()
        results: list[tuple[str, int, float, str]] = [None] * args.requests  # type: ignore[list-item]

        def one(i: int) -> None:
            nonlocal done
            name, data = inputs[order[i]]
            status, seconds, text = post(base + "/api/predict", name, data)
            results[i] = (order[i], status, seconds, text)
            with lock:
                done += 1
                if done == window:
                    rss["after first 100"] = rss_mb(server.pid)

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - start
        rss["after last 100"] = rss_mb(server.pid)
        time.sleep(0.5)   # the last request's cleanup runs after its response
        # torch makes its compile cache folder (torchinductor_<user>) in TMPDIR: its own, not an upload's
        torch_cache = [f for f in os.listdir(server_tmp) if f.startswith("torchinductor_")]
        left = [f for f in files_under(server_tmp) if os.path.relpath(f, server_tmp).split(os.sep)[0] not in torch_cache]
        alive = server.poll() is None and urllib.request.urlopen(base + "/api/model", timeout=5).status == 200
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(server_tmp, ignore_errors=True)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    latencies = sorted(r[2] for r in results)
    codes = collections.Counter(r[1] for r in results)
    by_kind = collections.defaultdict(collections.Counter)
    for kind, status, _, _ in results:
        by_kind[kind][status] += 1
    server_errors = sum(n for code, n in codes.items() if code >= 500 and code != 503 or code == 0)
    leaked = [r[3] for r in results if server_tmp in r[3] or "afnet-serve-" in r[3]]
    growth = rss["after last 100"] / rss["after first 100"] - 1
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
    print(f"CPU: {cpu_description()}; OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, server --threads 1, "
          f"{args.clients} clients, {args.requests} requests, --max-queue {args.max_queue}")
    print("| requests | clients | p50 s | p95 s | throughput req/s | status codes | 5xx (not 503) | "
          "RSS MB before / after first 100 / after last 100 | RSS growth first->last 100 | temp files left |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.requests} | {args.clients} | {p50:.3f} | {p95:.3f} | {args.requests / wall:.2f} | "
          f"{', '.join(f'{c}: {n}' for c, n in sorted(codes.items()))} | {server_errors} | "
          f"{rss['before']:.0f} / {rss['after first 100']:.0f} / {rss['after last 100']:.0f} | {100 * growth:+.1f}% | "
          f"{len(left)} |")
    print("status codes by kind: " + "; ".join(f"{k} {dict(sorted(c.items()))}" for k, c in by_kind.items()))
    print(f"server alive after the run: {alive}; responses naming a server path: {len(leaked)}")
    if left:
        print("left in the server's temporary folder: " + ", ".join(os.path.relpath(f, server_tmp) for f in left))
    if torch_cache:
        print(f"not counted: torch's cache folder {', '.join(torch_cache)} in the server's TMPDIR")
    for kind in kinds:
        sample = next((r[3] for r in results if r[0] == kind and r[1] != 200), None)
        if sample:
            print(f"  {kind}: {json.loads(sample).get('error', sample)[:200] if sample.startswith('{') else sample[:200]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"requests": args.requests, "clients": args.clients, "p50_s": p50, "p95_s": p95,
                       "throughput": args.requests / wall, "codes": dict(codes), "rss_mb": rss,
                       "temp_files_left": left, "server_errors": server_errors, "leaked_paths": len(leaked),
                       "cpu": cpu_description()}, f, indent=1)


if __name__ == "__main__":
    main()
