"""Load on `modellock serve`: concurrent clients for a fixed time, dynamic batching against --max-batch 1.

For each setting the script starts the real server process (``python -m modellock serve``) on a free
loopback port, runs ``--clients`` client threads that each send one image per request, back to back, for
``--seconds`` seconds, then stops the server with SIGTERM. It reports per setting: requests, errors,
throughput, p50/p99 latency, the mean batch size (from /metrics), the server's RSS averaged over the
first and the last 10 s, the server's CPU time per request (which other jobs on a shared machine do not
inflate, unlike the wall-clock figures) and its exit code; and the ratios of batching over no batching.
Traffic goes to 127.0.0.1 only, and every loop is bounded by time and by ``--max-requests``.

The model is an untrained locked ``small-cnn`` with ``--model-size`` inputs (or ``--model DIR --key FILE``)
with the CPU key editor ``keyed-filter``; requests carry ``--image-size`` square PNG images, which the
predictor shrinks to the model's working size before editing.

    OMP_NUM_THREADS=1 python bench/serve_load.py                       # 32 clients, 60 s per setting
    OMP_NUM_THREADS=1 python bench/serve_load.py --clients 8 --seconds 10
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PROMPT = "with oil pastel"  # a benchmark key, not anybody's


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    p.add_argument("--seconds", type=float, default=60.0, help="load time per setting (default 60)")
    p.add_argument("--image-size", type=int, default=128, help="side of the square test images (default 128)")
    p.add_argument("--model-size", type=int, default=64,
                   help="input size of the bench's model (default 64: the predictor shrinks inputs to 64 first)")
    p.add_argument("--max-batch", type=int, default=32, help="--max-batch of the batching run (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="--max-wait-ms of the batching run (default 5)")
    p.add_argument("--max-requests", type=int, default=200_000, help="stop a setting after this many requests")
    p.add_argument("--model", help="a locked model folder (default: an untrained small-cnn built here)")
    p.add_argument("--key", help="its key file (with --model)")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    args = p.parse_args(argv)
    if bool(args.model) != bool(args.key):
        p.error("--model and --key go together")
    if args.clients < 1 or args.seconds <= 0 or args.image_size < 8:
        p.error("--clients >= 1, --seconds > 0 and --image-size >= 8")
    return args


def _images(n: int, size: int) -> list[bytes]:
    from PIL import Image

    from modellock.testing import sample_images

    out = []
    for a in sample_images(n, (size, size), seed=7):
        buffer = io.BytesIO()
        Image.fromarray(a).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def _rss_mib(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) / 1024 if m else None


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (a measure the other jobs on the machine do not inflate)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_server(model: str, key: str, max_batch: int, max_wait_ms: float, clients: int):
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "modellock", "serve", "--model", model, "--key", key, "--port", "0",
           "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--no-access-log",
           "--max-concurrency", str(max(128, 2 * clients))]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining the log
            return proc, int(m.group(1))
    proc.kill()
    raise SystemExit(f"the server did not start: {proc.stderr.read()[-2000:]}")


def _client(port: int, bodies: list[bytes], stop_at: float, budget: list, out: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.time() < stop_at:
        with budget[1]:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        body = bodies[int(rng.integers(len(bodies)))]
        started = time.perf_counter()
        try:
            conn.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as e:
            status = type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        out.append((time.time(), time.perf_counter() - started, status))
    conn.close()


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def run_setting(label: str, model: str, key: str, args, max_batch: int, bodies: list[bytes]) -> dict:
    proc, port = _start_server(model, key, max_batch, args.max_wait_ms, args.clients)
    rss: list[tuple[float, float]] = []
    results: list = []
    started = time.time()
    stop_at = started + args.seconds
    budget = [args.max_requests, threading.Lock()]
    cpu_before = _cpu_seconds(proc.pid)
    threads = [threading.Thread(target=_client, args=(port, bodies, stop_at, budget, results, i))
               for i in range(args.clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        value = _rss_mib(proc.pid)
        if value is not None:
            rss.append((time.time() - started, value))
        time.sleep(1.0)
    for t in threads:
        t.join()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    metrics = conn.getresponse().read().decode()
    conn.close()
    cpu = _cpu_seconds(proc.pid) - cpu_before
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    elapsed = max(t for t, _, _ in results) - started if results else args.seconds
    ok = [lat for _, lat, status in results if status == 200]
    errors = len(results) - len(ok)
    first = [v for t, v in rss if t <= 10]
    last = [v for t, v in rss if t >= elapsed - 10]
    q = statistics.quantiles(ok, n=100) if len(ok) >= 2 else [float("nan")] * 99
    return {
        "setting": label, "max_batch": max_batch, "requests": len(results), "errors": errors,
        "throughput_rps": len(ok) / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000,
        "mean_batch": (_metric(metrics, "modellock_batch_size_sum")
                       / max(_metric(metrics, "modellock_batch_size_count"), 1)),
        "rss_first10_mib": statistics.mean(first) if first else float("nan"),
        "rss_last10_mib": statistics.mean(last) if last else float("nan"),
        "server_cpu_ms_per_request": 1000 * cpu / max(len(ok), 1), "exit_code": code, "seconds": elapsed,
        "rss_mib_by_second": [[round(t, 1), round(v, 1)] for t, v in rss],
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modellock-serve-load-") as tmp:
        if args.model:
            model, key = args.model, args.key
        else:
            from modellock.keys import Key
            from modellock.testing import build_tiny_locked_model

            k = Key.create("keyed-filter", PROMPT)
            key = str(k.save(Path(tmp) / "key.toml"))
            model = str(Path(tmp) / "model")
            build_tiny_locked_model(model, k, classes=[f"class{i}" for i in range(10)], model="small-cnn",
                                    image_size=args.model_size)
        import base64

        bodies = [json.dumps({"images": [base64.b64encode(png).decode()]}).encode()
                  for png in _images(16, args.image_size)]
        rows = [run_setting(f"batching (--max-batch {args.max_batch}, --max-wait-ms {args.max_wait_ms:g})", model,
                            key, args, args.max_batch, bodies),
                run_setting("no batching (--max-batch 1)", model, key, args, 1, bodies)]
    ratio = rows[0]["throughput_rps"] / rows[1]["throughput_rps"] if rows[1]["throughput_rps"] else float("nan")
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"{args.clients} clients, {args.seconds:g} s per setting, one {args.image_size}x{args.image_size} PNG per "
          f"request, small-cnn at {args.model_size}x{args.model_size}, OMP_NUM_THREADS={threads}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| setting | requests | errors | req/s | p50 ms | p99 ms | mean batch | server CPU ms/request | "
          "RSS first 10 s MiB | RSS last 10 s MiB | exit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['requests']} | {r['errors']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['mean_batch']:.1f} | {r['server_cpu_ms_per_request']:.2f} | "
              f"{r['rss_first10_mib']:.0f} | {r['rss_last10_mib']:.0f} | {r['exit_code']} |")
    cpu_ratio = rows[1]["server_cpu_ms_per_request"] / rows[0]["server_cpu_ms_per_request"]
    print(f"\nthroughput ratio, batching / no batching: {ratio:.2f}x; server CPU per request, no batching / "
          f"batching: {cpu_ratio:.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items()}, "rows": rows,
                                               "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
