"""Websocket fan-out over Redis: one health update reaching 200 connected dashboards.

    .venv/bin/python -m bench.bench_websocket [--quick] [--clients 200] [--updates 30]

A daphne server (the production ASGI entry point, in a subprocess) runs on the
PostgreSQL database ``trading_bench_websocket`` (created and migrated here) with the
Redis channel layer. ``clients`` real websocket connections log in with a session
cookie and join the live group. The benchmark then pushes ``updates`` health
updates through ``tradingsite.live.send_now`` (the platform's only push path) and
times each delivery, from just before the push to its arrival at each client.

Two Redis layers are measured: channels_redis' default ``RedisChannelLayer`` (what
the platform's settings use with ``REDIS_URL``) and its ``RedisPubSubChannelLayer``.

Environment: ``BENCH_DATABASE_URL`` (default
postgres://postgres@127.0.0.1:5432/trading_bench_websocket), ``BENCH_REDIS_URL``
(default redis://127.0.0.1:6379/7; a dedicated channel prefix keeps it apart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np

from bench.websocket_settings import LAYER_BACKENDS, bench_channel_layers
from tradingsite.testing.live_server import ROOT, asgi_server

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/trading_bench_websocket"
DEFAULT_REDIS = "redis://127.0.0.1:6379/7"
CHANNELS_PREFIX = "bench_ws"
TARGET_P95_MS = 200.0
CONNECT_CONCURRENCY = 25
DELIVERY_TIMEOUT_S = 10.0
POSITIONS_PER_UPDATE = 8  # a realistic 'health.updated' payload: one entry per open position

SESSION_SCRIPT = """
import django
django.setup()
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
user, created = get_user_model().objects.get_or_create(username="bench-viewer")
if created:
    user.set_unusable_password()
    user.save()
store = SessionStore()
store[SESSION_KEY] = str(user.pk)
store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
store[HASH_SESSION_KEY] = user.get_session_auth_hash()
store.create()
print(store.session_key)
"""


def _ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _manage_env(database_url: str, redis_url: str, layer: str = "core") -> dict[str, str]:
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "CHANNELS_PREFIX": CHANNELS_PREFIX, "BENCH_CHANNEL_LAYER": layer,
            "DJANGO_SETTINGS_MODULE": "bench.websocket_settings", "LOG_LEVEL": "WARNING"}


def _prepare(database_url: str, redis_url: str) -> str:
    """Create and migrate the bench database; return a logged-in session key."""
    _ensure_database(database_url)
    env = {**os.environ, **_manage_env(database_url, redis_url)}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=env, check=True)
    out = subprocess.run([sys.executable, "-c", SESSION_SCRIPT], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def _health_payload(seq: int) -> dict:
    return {"bench_seq": seq, "positions": [
        {"id": 1000 + i, "symbol": "BTC/USDT:USDT", "score": 71.5 - i, "danger_level": "SAFE",
         "state": "OPEN", "minutes_to_timeout": 120.0, "last_price": "64210.5",
         "unrealised_pnl": "12.5", "data_complete": True,
         "components": {"time_at_risk": 50.0, "drawdown": 90.0, "volume": 70.0,
                        "volatility": 60.0, "profitability": 75.0}}
        for i in range(POSITIONS_PER_UPDATE)]}


@dataclass
class FanOut:
    expected: int
    sent_at: dict[int, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    received: dict[int, int] = field(default_factory=dict)
    done: dict[int, asyncio.Event] = field(default_factory=dict)

    def arrived(self, seq: int, at: float) -> None:
        self.latencies_ms.append((at - self.sent_at[seq]) * 1000)
        self.received[seq] = self.received.get(seq, 0) + 1
        if self.received[seq] == self.expected:
            self.done[seq].set()


async def _client(url: str, cookie: str, origin: str, fanout: FanOut, gate: asyncio.Semaphore,
                  ready: asyncio.Event, connected: list) -> None:
    """One dashboard: log in over the websocket, then time every health update it gets."""
    from websockets.asyncio.client import connect

    async with gate:  # bound concurrent handshakes, not connection lifetimes
        ws = await connect(url, additional_headers={"Cookie": cookie}, origin=origin,
                           compression=None, open_timeout=30)
        hello = json.loads(await ws.recv())
    if hello.get("event") != "hello":
        raise RuntimeError(f"unexpected first message {hello}")
    connected.append(ws)
    if len(connected) == fanout.expected:
        ready.set()
    async with ws:
        async for raw in ws:
            now = time.perf_counter()
            message = json.loads(raw)
            if message.get("event") == "health.updated":
                fanout.arrived(message["payload"]["bench_seq"], now)


async def _run(base_url: str, session_key: str, clients: int, updates: int) -> dict:
    from websockets.exceptions import ConnectionClosed

    from tradingsite.live import send_now

    ws_url = base_url.replace("http://", "ws://") + "/ws/health/"
    fanout = FanOut(expected=clients)
    ready, connected = asyncio.Event(), []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    started = time.perf_counter()
    tasks = [asyncio.create_task(_client(ws_url, f"sessionid={session_key}", base_url, fanout,
                                         gate, ready, connected)) for _ in range(clients)]
    await asyncio.wait_for(ready.wait(), timeout=120)
    connect_s = time.perf_counter() - started
    lost = 0
    for seq in range(updates):
        fanout.done[seq] = asyncio.Event()
        fanout.sent_at[seq] = time.perf_counter()
        await asyncio.to_thread(send_now, "health.updated", _health_payload(seq))
        try:
            await asyncio.wait_for(fanout.done[seq].wait(), timeout=DELIVERY_TIMEOUT_S)
        except TimeoutError:
            lost += clients - fanout.received.get(seq, 0)
        await asyncio.sleep(0.05)  # pacing between updates, outside the timed window
    for ws in connected:
        await ws.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, ConnectionClosed)]
    if failures:
        raise failures[0]
    return {"connect_s": connect_s, "latencies_ms": fanout.latencies_ms, "lost": lost}


def _measure(layer: str, database_url: str, redis_url: str, session_key: str, clients: int,
             updates: int) -> list[dict]:
    """Serve with ``layer`` and push through the same layer from here (send_now)."""
    from django.test.utils import override_settings

    with override_settings(CHANNEL_LAYERS=bench_channel_layers(layer, redis_url, CHANNELS_PREFIX)), \
            asgi_server(_manage_env(database_url, redis_url, layer)) as base_url:
        result = asyncio.run(_run(base_url, session_key, clients, updates))
    lat = np.array(result["latencies_ms"])
    p50, p95, worst = (np.percentile(lat, [50, 95, 100]) if lat.size else (np.nan,) * 3)
    size = f"{clients} clients × {updates} updates"
    name = LAYER_BACKENDS[layer].rsplit(".", 1)[1]
    return [
        {"workload": f"websocket fan-out ({name}): delivery p50 / p95", "size": size,
         "figure": f"{p50:.0f} / {p95:.0f} ms (max {worst:.0f} ms)",
         "target": f"p95 ≤ {TARGET_P95_MS:.0f} ms",
         "met": bool(p95 <= TARGET_P95_MS) and result["lost"] == 0},
        {"workload": f"websocket fan-out ({name}): updates lost", "size": size,
         "figure": str(result["lost"]), "target": "0", "met": result["lost"] == 0},
        {"workload": f"websocket ({name}): connect and log in all clients", "size": clients,
         "figure": f"{result['connect_s']:.2f} s", "target": "-", "met": True},
    ]


def run(quick: bool = False, clients: int = 200, updates: int | None = None) -> list[dict]:
    updates = updates or (5 if quick else 30)
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    session_key = _prepare(database_url, redis_url)
    rows: list[dict] = []
    for layer in LAYER_BACKENDS:
        rows += _measure(layer, database_url, redis_url, session_key, clients, updates)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--updates", type=int)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
    import django

    django.setup()
    from bench.__main__ import render

    print(render(run(quick=args.quick, clients=args.clients, updates=args.updates)))


if __name__ == "__main__":
    main()
