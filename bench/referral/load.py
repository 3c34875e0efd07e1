"""The landing's load generator: N threads, one keep-alive HTTP connection each, ``GET /r/{token}`` in a closed loop.

Two kinds of visitor:

- **new** (``cookie=False``): every request is a fresh browser, without the landing's cookie, so each one
  that the app answers with a redirect took a new friend code from the pool;
- **same** (``cookie=True``): each thread is one browser. Its first visit (not timed, not counted) takes
  its code and keeps the cookie the app set; every timed request sends that cookie and must be sent
  back to the same code.

Every request carries its own ``X-Forwarded-For`` address (the app trusts one proxy hop in this
benchmark), so each visitor is counted against an address of its own by the public rate limit, as
visitors coming through a load balancer are. Both targets get exactly the same requests. A request
in flight at the deadline is finished and counted, so no code is taken that the client did not see.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import unquote, urlsplit

from bench.intake.load import REQUEST_TIMEOUT, THREAD_JOIN_SLACK, LoadResult

ADDRESSES = itertools.count(1)  # one client address per request, never reused within a run (16M of them)


def next_address() -> str:
    n = next(ADDRESSES)  # itertools.count is atomic under the GIL
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def code_of(location: str | None) -> str | None:
    """The code in a store discount link (``{store}/discount/{CODE}?redirect=...``), or None."""
    if not location:
        return None
    path = urlsplit(location).path
    return unquote(path.rsplit("/discount/", 1)[1]) if "/discount/" in path else None


@dataclass
class LandingResult(LoadResult):
    """A run against one target; success is a 302 to the store's discount link."""

    codes: list[str] = field(default_factory=list)  # the code of every 302, in no particular order
    first_visits: list[str] = field(default_factory=list)  # same-browser runs: each browser's own code
    other_code: int = 0  # same-browser runs: redirects to a code that is not the browser's own
    machine: dict[str, object] = field(default_factory=dict)  # load average before, busy cores meanwhile

    @property
    def ok(self) -> int:
        return self.statuses.get(302, 0)

    @property
    def errors(self) -> int:
        return self.requests - self.ok + self.other_code

    def summary(self) -> dict[str, object]:
        return super().summary() | {"distinct_codes": len(set(self.codes)), "other_code": self.other_code,
                                    "first_visits": len(self.first_visits), **self.machine}


def _request(connection: http.client.HTTPConnection, path: str,
             cookie: str | None) -> tuple[int, str | None, str | None]:
    headers = {"X-Forwarded-For": next_address(), "User-Agent": "oncecode-bench"}
    if cookie:
        headers["Cookie"] = cookie
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status, response.getheader("Location"), response.getheader("Set-Cookie")


def _cookie(set_cookie: str | None) -> str | None:
    """The ``Cookie`` header a browser sends back for a ``Set-Cookie`` answer (name=value pairs only)."""
    if not set_cookie:
        return None
    jar: SimpleCookie = SimpleCookie()
    jar.load(set_cookie)
    return "; ".join(f"{name}={morsel.coded_value}" for name, morsel in jar.items()) or None


@dataclass
class Clock:
    """Started by the last thread to be ready (after the first visits), read by all of them."""

    seconds: float
    started: float = 0.0
    deadline: float = 0.0
    cpu_started: float = 0.0

    def start(self) -> None:
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        self.deadline = self.started + self.seconds


def _client(port: int, path: str, same_browser: bool, clock: Clock, ready: threading.Barrier,
            stop: threading.Event, result: LandingResult, lock: threading.Lock) -> None:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    codes: list[str] = []
    failures = other = 0
    cookie = own = None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        try:
            if same_browser:  # this browser's first visit: it takes the code and keeps the cookie
                status, location, set_cookie = _request(connection, path, None)
                own, cookie = code_of(location), _cookie(set_cookie)
                if status != 302 or own is None or cookie is None:
                    raise RuntimeError(f"first visit answered {status} to {location!r}, cookie {set_cookie!r}")
        finally:
            ready.wait()  # every thread, even one whose first visit failed: the others must not wait forever
        while not stop.is_set() and time.perf_counter() < clock.deadline:
            started = time.perf_counter()
            try:
                status, location, _ = _request(connection, path, cookie)
            except (OSError, http.client.HTTPException):
                failures += 1
                connection.close()
                time.sleep(0.01)  # a dead server refuses at once: do not spin
                continue
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
            if status == 302 and (code := code_of(location)) is not None:
                codes.append(code)
                other += own is not None and code != own
    finally:
        connection.close()
        with lock:
            result.latencies.extend(latencies)
            result.statuses.update(statuses)
            result.failures += failures
            result.codes.extend(codes)
            result.other_code += other
            if own is not None:
                result.first_visits.append(own)


def run_load(target: str, port: int, paths: list[str], seconds: float, connections: int,
             same_browser: bool = False) -> LandingResult:
    """Drive ``GET`` on 127.0.0.1:``port`` from ``connections`` threads for ``seconds`` (after each
    same-browser thread's untimed first visit); thread ``i`` opens ``paths[i % len(paths)]``."""
    result = LandingResult(target=target, elapsed=0.0)
    stop, lock, clock = threading.Event(), threading.Lock(), Clock(seconds)
    ready = threading.Barrier(connections, action=clock.start, timeout=REQUEST_TIMEOUT + 5)
    threads = [threading.Thread(target=_client, args=(port, paths[i % len(paths)], same_browser, clock, ready, stop,
                                                               result, lock),
                                name=f"load-{target}-{i}", daemon=True) for i in range(connections)]
    limit = time.perf_counter() + seconds + 2 * THREAD_JOIN_SLACK
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(0.0, limit - time.perf_counter()))
    finally:
        stop.set()  # on Ctrl-C, or a thread stuck past its timeout: let the others wind down
    result.elapsed = time.perf_counter() - clock.started
    result.client_cpu = time.process_time() - clock.cpu_started
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        raise RuntimeError(f"{stuck} load threads for {target} did not finish within their timeout")
    if same_browser and len(result.first_visits) != connections:
        raise RuntimeError(f"{target}: {connections - len(result.first_visits)} browsers got no code on their "
                           "first visit")
    return result
