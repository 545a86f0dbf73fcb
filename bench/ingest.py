"""Ingest benchmark: ``tracehound serve`` vs a naive per-request Arrow insert, same run, same load.

    .venv/bin/python bench/ingest.py [--processes 2] [--threads 5] [--requests 300]

The default load is 10 connections in all (2 processes x 5): as many exports in flight as one
OpenTelemetry Collector sends a backend by default (exporterhelper ``sending_queue.num_consumers``
= 10), the set-up of docker-compose.yml, where the Collector fans the apps' spans in to tracehound.

Each load process pre-generates its own unique requests (512 realistic spans each: Flask server
spans and SQLAlchemy client spans with the attributes those instrumentations emit, see
bench/spans.py), waits at a barrier, then POSTs them over OTLP/HTTP protobuf on keep-alive
connections. A span counts once its export was answered 200, which tracehound does only after
commit. Printed per server: spans/s (acknowledged and committed, wall clock from the barrier to the
last answer), bytes/span of the DuckDB file after shutdown (checkpointed), the server's peak RSS
(VmHWM), and refusals (503) retried. Then the ratios tracehound / baseline.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = 512


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(port: int, seed: int, n_requests: int, threads: int, barrier, results) -> None:
    from bench.spans import make_request

    base = time.time_ns()
    bodies = [
        make_request(BATCH, seed=seed * 100_000 + i, start_ns=base + i * 50_000_000).SerializeToString()
        for i in range(n_requests)
    ]
    lock = threading.Lock()
    counters = {"acked": 0, "refused": 0, "bytes": 0}

    def worker(mine):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for body in mine:
            while True:
                conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    with lock:
                        counters["acked"] += BATCH
                        counters["bytes"] += len(body)
                    break
                if response.status in (429, 503):
                    with lock:
                        counters["refused"] += 1
                    time.sleep(0.05)
                    continue
                raise RuntimeError(f"export failed: HTTP {response.status}")
        conn.close()

    barrier.wait()
    started, cpu_started = time.perf_counter(), time.process_time()
    pool = [threading.Thread(target=worker, args=(bodies[t::threads],)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put(
        {
            **counters,
            "started": started,
            "ended": time.perf_counter(),
            "cpu_s": time.process_time() - cpu_started,
        }
    )


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat, minus idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _wait_http(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/status")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on {port} did not come up")


def _status(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/v1/status")
    return json.loads(conn.getresponse().read())


def run(kind: str, workdir: Path, args) -> dict:
    db = workdir / f"{kind}.duckdb"
    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if kind == "tracehound":
        cmd = [
            str(Path(sys.executable).parent / "tracehound"),
            "serve",
            "--db",
            str(db),
            "--port",
            str(_free_port()),
            "--otlp-http-port",
            str(port),
            "--otlp-grpc-port",
            str(_free_port()),
            "--analyzer" if args.with_analyzer else "--no-analyzer",
        ]
    else:
        cmd = [sys.executable, str(ROOT / "bench" / "naive_server.py"), str(db), str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_http(port)
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(args.processes + 1)
        results = ctx.Queue()
        clients = [
            ctx.Process(
                target=_client,
                args=(
                    port,
                    p + (1000 if kind == "baseline" else 0),
                    args.requests,
                    args.threads,
                    barrier,
                    results,
                ),
            )
            for p in range(args.processes)
        ]
        for c in clients:
            c.start()
        barrier.wait()  # all clients have generated their requests
        cpu_before, busy_before = _cpu_s(server.pid), _machine_busy_s()
        outs = [results.get(timeout=1800) for _ in clients]
        cpu, busy = _cpu_s(server.pid) - cpu_before, _machine_busy_s() - busy_before
        for c in clients:
            c.join()
        status = _status(port)
        committed = status["spans_committed"]
        rss = _peak_rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=300)
    if server.returncode != 0:
        raise RuntimeError(f"{kind} server exited {server.returncode}: {err}")
    acked = sum(o["acked"] for o in outs)
    seconds = max(o["ended"] for o in outs) - min(o["started"] for o in outs)
    size = sum(p.stat().st_size for p in workdir.glob(f"{kind}.duckdb*"))
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        used, free, block = con.execute(
            "SELECT used_blocks, free_blocks, block_size FROM pragma_database_size() WHERE database_name = ?",
            [db.stem],
        ).fetchone()
    return {
        "spans": acked,
        "committed": committed,
        "seconds": seconds,
        "spans_per_s": acked / seconds,
        "bytes_per_span": size / max(acked, 1),
        # free blocks are left by checkpoints that rewrote a partly filled row group; later
        # checkpoints reuse them, so a long-running file tends to the used-block figure
        "used_bytes_per_span": used * block / max(acked, 1),
        "free_blocks": free,
        "rss_mb": rss,
        "refused": sum(o["refused"] for o in outs),
        # inserts (commits) the server made: the fewer, the larger each group commit
        "commits": status.get("commits", 0),
        "cpu_us_per_span": cpu / max(acked, 1) * 1e6,
        "wire_bytes_per_span": sum(o["bytes"] for o in outs) / max(acked, 1),
        # where the machine's CPU went while the load ran, in cores (busy seconds / wall seconds):
        # other processes on a shared machine take cores the server and its clients cannot use
        "cores_server": cpu / seconds,
        "cores_clients": sum(o["cpu_s"] for o in outs) / seconds,
        "cores_other": max(0.0, busy - cpu - sum(o["cpu_s"] for o in outs)) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=2, help="load processes (default 2)")
    parser.add_argument(
        "--threads",
        type=int,
        default=5,
        help="connections per load process (default 5: 10 in all, an OTel Collector's default of 10 senders)",
    )
    parser.add_argument(
        "--requests", type=int, default=300, help="requests of 512 spans per process (default 300)"
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--with-analyzer",
        action="store_true",
        help="keep the analyzer worker running in tracehound serve (default: ingest only, like the baseline)",
    )
    parser.add_argument("--keep", type=Path, help="keep the databases in this directory")
    args = parser.parse_args()
    print(
        f"tracehound serve {'with' if args.with_analyzer else 'without'} its analyzer worker; "
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
        f"{args.processes} load processes x {args.threads} connections x {args.requests} requests x {BATCH} spans"
    )
    figures = {}
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="th-bench-") as tmp:
        tmp = args.keep or tmp
        kinds = ["tracehound"] if args.skip_baseline else ["tracehound", "baseline"]
        for kind in kinds:
            f = figures[kind] = run(kind, Path(tmp), args)
            print(
                f"{kind:>10}: {f['spans_per_s']:>9,.0f} spans/s acked+committed ({f['spans']:,} spans in "
                f"{f['seconds']:.1f} s, {f['committed']:,} committed) · {f['bytes_per_span']:.1f} bytes/span on disk "
                f"({f['used_bytes_per_span']:.1f} in used blocks, {f['free_blocks']} free blocks) · "
                f"peak RSS {f['rss_mb']:.0f} MB · {f['refused']} refused (503, retried) · "
                f"server CPU {f['cpu_us_per_span']:.1f} µs/span · {f['wire_bytes_per_span']:.0f} wire bytes/span",
                flush=True,
            )
            print(
                f"{'':>10}  cores busy during the load: server {f['cores_server']:.2f}, load clients "
                f"{f['cores_clients']:.2f}, other processes {f['cores_other']:.2f} (of {os.cpu_count()})"
                + (
                    f"; {f['commits']:,} commits ({f['committed'] / f['commits']:,.0f} spans each)"
                    if f["commits"]
                    else ""
                ),
                flush=True,
            )
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    t = figures["tracehound"]
    if "baseline" in figures:
        b = figures["baseline"]
        print(
            f"     ratio: {t['spans_per_s'] / b['spans_per_s']:.2f}x spans/s · "
            f"{t['bytes_per_span'] / b['bytes_per_span']:.2f}x bytes/span · {t['rss_mb'] / b['rss_mb']:.2f}x RSS · "
            f"{t['cpu_us_per_span'] / b['cpu_us_per_span']:.2f}x server CPU per span"
        )
    ok = {True: "met", False: "MISSED"}
    print(
        f"   targets: >=100,000 spans/s {ok[t['spans_per_s'] >= 100_000]} · <=60 bytes/span "
        f"{ok[t['bytes_per_span'] <= 60]} · <=500 MB RSS {ok[t['rss_mb'] <= 500]}"
    )


if __name__ == "__main__":
    main()
