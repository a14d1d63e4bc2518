"""Bounded load test of the demo on 127.0.0.1: concurrent previews of an 8000x8000 image and generations.

Starts ``zero1to3 demo`` in a subprocess (embedded model, CPU), sends a fixed number of requests at once
from threads (gradio_client), waits at most ``--duration`` seconds, and reports: answers per kind, the
server's peak resident memory (VmHWM), its memory and temp-folder size afterwards, and whether SIGTERM
removes the temp folder and exits 143. Prints one JSON line; numbers go to docs/robustness.md.

    python scripts/demo_load_test.py --previews 20 --generations 20 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from PIL import Image


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(pid: int, key: str) -> int:
    """A /proc/PID/status field in bytes (VmHWM: peak resident set, VmRSS: current)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) * 1024


def _folder_bytes(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return len(files), sum(p.stat().st_size for p in files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--previews", type=int, default=20)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10, help="sampler steps per generation")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--size", type=int, default=8000, help="side of the preview image in pixels")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to wait for all answers")
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="zero1to3-load-"))
    big = work / "big.png"
    Image.new("RGB", (args.size, args.size), (250, 250, 250)).save(big, optimize=True)
    small = Path(__file__).resolve().parents[1] / "src" / "zero1to3" / "assets" / "examples" / "bear.png"
    port = _free_port()
    env = dict(os.environ, TMPDIR=str(work), GRADIO_ANALYTICS_ENABLED="False")
    server = subprocess.Popen([sys.executable, "-m", "zero1to3", "demo", "--port", str(port), "--device", "cpu"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        for line in server.stdout:  # keep the pipe drained for the whole run
            lines.append(line.rstrip())
            if "serving" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(300):
        server.kill()
        print("\n".join(lines[-20:]))
        return 1
    demo_dirs = [p for p in work.iterdir() if p.name.startswith("zero1to3-demo-")]
    base_rss = _status(server.pid, "VmRSS")
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)

    def preview() -> str:
        result = client.predict(handle_file(str(big)), 0.6, api_name="/on_preview")
        return "cleared" if result is None else "image"

    def generate(i: int) -> str:
        gallery, status = client.predict(handle_file(str(small)), 0.6, 0.0, 90.0, 0.0, args.samples, 3.0,
                                         args.steps, "ddim", i, api_name="/on_generate")
        return f"{len(gallery)} view(s)"

    answers: dict[str, list[str]] = {"preview": [], "generate": []}
    start = time.perf_counter()
    with ThreadPoolExecutor(args.previews + args.generations) as pool:
        futures = {pool.submit(preview): "preview" for _ in range(args.previews)}
        futures.update({pool.submit(generate, i): "generate" for i in range(args.generations)})
        done, pending = wait(futures, timeout=args.duration)
        for future in done:
            try:
                answers[futures[future]].append(future.result())
            except Exception as exc:  # an error answer is still an answer; record its kind
                answers[futures[future]].append(f"error: {type(exc).__name__}: {str(exc)[:80]}")
        for future in pending:
            future.cancel()
    seconds = time.perf_counter() - start
    time.sleep(2.0)
    peak = _status(server.pid, "VmHWM")
    after = _status(server.pid, "VmRSS")
    files, size = _folder_bytes(demo_dirs[0]) if demo_dirs else (0, 0)
    client.close() if hasattr(client, "close") else None
    server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        code = None
    left = [str(p) for p in work.iterdir() if p.name.startswith("zero1to3-demo-")]
    report = {
        "previews": args.previews, "generations": args.generations, "steps": args.steps,
        "image_px": f"{args.size}x{args.size}", "image_bytes": big.stat().st_size,
        "answered": {k: len(v) for k, v in answers.items()}, "unanswered": len(pending),
        "answers": {k: sorted(set(v)) for k, v in answers.items()}, "seconds": round(seconds, 1),
        "server_rss_start_gb": round(base_rss / 2**30, 3), "server_peak_rss_gb": round(peak / 2**30, 3),
        "server_rss_after_gb": round(after / 2**30, 3), "demo_folder_files_after": files,
        "demo_folder_bytes_after": size, "sigterm_exit_code": code, "demo_folder_left_after_sigterm": left,
    }
    print(json.dumps(report))
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    ok = (not pending and peak < 3 * 2**30 and code == 143 and not left
          and all(not a.startswith("error") for a in answers["generate"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
