"""The demo's load driver: a few threads hitting every bookshop route with a realistic mix.

Each request picks a route by weight (list pages and the JSON API more often than the cart), with
varied ids and search terms. Planted routes and their twins get equal weights so the analyzer
sees both sides equally often.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import requests

WORDS = [
    "lighthouse",
    "river",
    "glacier",
    "violin",
    "harbor",
    "cipher",
    "atlas",
    "orchard",
    "falcon",
    "ember",
]
TAGS = ["history", "poetry", "travel", "mystery", "science", "art", "music", "fantasy"]

#: (weight, method, path template). ``{book}``, ``{author}``, ``{page}``, ``{cart}``, ``{order}``,
#: ``{word}``, ``{tag}``, ``{user}`` are filled per request.
MIX: list[tuple[int, str, str]] = [
    (3, "GET", "/"),
    (4, "GET", "/books?page={page}"),
    (4, "GET", "/books/eager?page={page}"),
    (4, "GET", "/books/{book}"),
    (3, "GET", "/authors?page={page}"),
    (3, "GET", "/authors/eager?page={page}"),
    (2, "GET", "/authors/{author}"),
    (1, "GET", "/tags"),
    (2, "GET", "/tags/{tag}"),
    (1, "GET", "/search?q={word}"),
    (1, "GET", "/search/tags?q={tag}"),
    (1, "GET", "/tags/{tag}/popular"),
    (1, "GET", "/tags/{tag}/popular/indexed"),
    (3, "GET", "/cart/{cart}"),
    (3, "GET", "/cart/{cart}/hoisted"),
    (2, "GET", "/orders/{order}"),
    (3, "GET", "/api/books?page={page}"),
    (3, "GET", "/api/books/{book}"),
    (1, "GET", "/api/authors?page={page}"),
    (4, "GET", "/api/prices?page={page}"),
    (4, "GET", "/api/prices/bulk?page={page}"),
    (8, "GET", "/api/recommendations?user={user}"),
    (8, "GET", "/api/bestsellers"),
    (2, "GET", "/api/shipping/quote?weight_g={weight}"),
    (2, "GET", "/api/shipping/quote/concurrent?weight_g={weight}"),
    (3, "GET", "/api/inventory/report"),
    (3, "GET", "/api/inventory"),
    (1, "POST", "/api/orders"),
    (2, "GET", "/api/orders/{order}"),
    (1, "GET", "/api/health"),
]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        book=rng.randint(1, 1200),
        author=rng.randint(1, 250),
        page=rng.randint(1, 4),
        cart=rng.randint(1, 50),
        order=rng.randint(51, 400),
        word=rng.choice(WORDS),
        tag=rng.choice(TAGS),
        user=rng.randint(1, 100_000),
        weight=rng.choice((250, 800, 1500, 3000)),
    )


class LoadResult:
    """Counts of requests per route template and of failures (non-2xx or transport errors)."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def drive(
    base_url: str,
    duration_s: float,
    threads: int = 4,
    seed: int = 7,
    on_tick: Callable[[float], None] | None = None,
) -> LoadResult:
    """Send the :data:`MIX` to ``base_url`` from ``threads`` threads for ``duration_s`` seconds.

    Every route is requested at least once (in order, first) so each shows up even in a short
    run. ``on_tick(elapsed_s)`` is called about twice a second from the calling thread (progress).
    """
    result = LoadResult()
    deadline = time.monotonic() + duration_s
    weights = [w for w, _, _ in MIX]

    def one(session: requests.Session, rng: random.Random, method: str, template: str) -> None:
        url = base_url + _fill(template, rng)
        try:
            if method == "POST":
                body = {"email": f"r{rng.randint(1, 999)}@example.org",
                        "items": [{"book_id": rng.randint(1, 1200), "quantity": rng.randint(1, 2)}]}  # fmt: skip
                ok = session.post(url, json=body, timeout=30).ok
            else:
                ok = session.get(url, timeout=30).ok
        except requests.RequestException:
            ok = False
        with result.lock:
            result.requests[template] += 1
            if not ok:
                result.failures[template] += 1

    def worker(index: int) -> None:
        rng = random.Random(seed + index)
        with requests.Session() as session:
            if index == 0:
                for _, method, template in MIX:
                    one(session, rng, method, template)
            while time.monotonic() < deadline:
                _, method, template = rng.choices(MIX, weights=weights)[0]
                one(session, rng, method, template)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    started = time.monotonic()
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        for w in workers:
            w.join(timeout=0.5)
        if on_tick:
            on_tick(time.monotonic() - started)
    return result


def main() -> None:
    """``python -m tracehound.demo.load --url URL [--duration S] [--threads N] [--wait S]``.

    ``--duration 0`` runs until interrupted (the compose ``load`` service); ``--wait`` is how long
    to wait for ``URL/api/health`` first.
    """
    import argparse

    parser = argparse.ArgumentParser(description="Drive the demo bookshop with a realistic request mix.")
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until interrupted")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the app to answer")
    args = parser.parse_args()
    deadline = time.monotonic() + args.wait
    while True:
        try:
            if requests.get(f"{args.url}/api/health", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{args.url} did not answer /api/health within {args.wait:.0f} s")
        time.sleep(1)
    try:
        while True:
            result = drive(args.url, args.duration or 60.0, threads=args.threads)
            print(f"{result.total} requests, {sum(result.failures.values())} failed", flush=True)
            if args.duration:
                break
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
