"""The command line of ``python -m bench.run``: what one invocation runs (:class:`Options`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench._common import redis_url_from_env, require_loopback_redis
from bench.asgi_servers import ASGI_SERVERS
from bench.targets import ACK_TARGETS, ROUTES, TARGETS

DEFAULT_TARGETS = (
    "realtime",
    "realtime-redis",
    "channels-core",
    "channels-pubsub",
    "bare",
    "realtime-sse",
    "realtime-longpoll",
    "realtime-ack",
    "realtime-ack-batch",
)


@dataclass(frozen=True)
class Options:
    """Everything one invocation runs."""

    connections: list[int]
    messages: int
    rate: float
    nodes: list[int]
    targets: list[str]
    repeat: int
    client_procs: int
    concurrency: int
    drain: float
    idle: float
    max_drain: float
    redis_url: str
    json_path: str | None
    keep_logs: bool
    quick: bool
    #: ASGI servers of the Django targets; each run compares them, the first is the baseline.
    servers: tuple[str, ...] = ("daphne",)
    #: How the clients reach the nodes: ``direct`` (split over them), ``nginx`` (through
    #: docs/deployment.md's configuration, plain HTTP); the first is the baseline.
    via: tuple[str, ...] = ("direct",)
    #: Sizes of the HTTP-transport targets (``--connections`` sizes the WebSocket ones).
    sse_connections: tuple[int, ...] = (1000,)
    longpoll_connections: tuple[int, ...] = (500,)
    ack_connections: tuple[int, ...] = (1000,)
    #: The storm scenario (bench/storm.py) instead of the broadcast one.
    storm: bool = False
    storm_connections: int = 2000
    storm_messages: int = 100
    storm_rate: float = 5.0
    storm_jitter: float = 0.5
    storm_variants: tuple[str, ...] = ("shared", "admission")
    storm_admission: float = 300.0
    #: The idle scenario (bench/idle.py) instead of the broadcast one.
    idle_scenario: bool = False
    idle_connections: int = 10_000
    idle_window: float = 60.0
    #: Idle: other checkouts whose ``realtime`` the `realtime` target also runs, as
    #: ``label=path`` (A/B in one run), and whether to profile the server over the window.
    idle_code: tuple[tuple[str, str], ...] = ()
    idle_profile: bool = False
    idle_server_pings: bool = False

    @property
    def server(self) -> str:
        """The baseline server (the only one the storm and idle scenarios use)."""
        return self.servers[0]

    def sizes(self, target: str) -> list[int]:
        """The connection counts ``target`` runs at."""
        if target in ACK_TARGETS:
            return list(self.ack_connections)
        if target == "realtime-sse":
            return list(self.sse_connections)
        if target == "realtime-longpoll":
            return list(self.longpoll_connections)
        return list(self.connections)


def _int_list(text: str) -> list[int]:
    values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1000,5000")
    return values


def parse_args(argv: list[str] | None = None) -> Options:
    """Parse the command line (``--quick`` changes the defaults it is not given)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Broadcast benchmark: realtime (WebSocket, SSE, long-poll) vs plain Channels "
        "vs a bare websockets server.",
    )
    parser.add_argument(
        "--connections", type=_int_list, help="WebSocket targets: default 1000,5000 (quick: 200)"
    )
    parser.add_argument(
        "--sse-connections", type=_int_list, help="SSE streams: default 1000 (quick: 200)"
    )
    parser.add_argument(
        "--longpoll-connections",
        type=_int_list,
        help="long-poll clients: default 500 (quick: 200)",
    )
    parser.add_argument(
        "--ack-connections",
        type=_int_list,
        help="realtime-ack and realtime-ack-batch clients: default 1000 (quick: 200)",
    )
    parser.add_argument("--messages", type=int, help="messages per run (default 40, quick: 20)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second (50)")
    parser.add_argument("--nodes", type=_int_list, default=[1, 2], help="default 1,2")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS))
    parser.add_argument("--repeat", type=int, default=1, help="repeats; medians are reported")
    parser.add_argument("--client-procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes per process")
    parser.add_argument("--drain", type=float, help="min. wait after the last publish (10, q: 3)")
    parser.add_argument("--idle", type=float, help="then stop after this long idle (2, q: 1.5)")
    parser.add_argument("--max-drain", type=float, help="hard stop after last publish (45, q: 15)")
    parser.add_argument(
        "--server",
        choices=ASGI_SERVERS,
        help="ASGI server of the Django targets (daphne; uvicorn to compare)",
    )
    parser.add_argument(
        "--servers",
        help="ASGI servers compared in one run, interleaved per repeat (e.g. daphne,uvicorn)",
    )
    parser.add_argument(
        "--via",
        default="direct",
        help="direct, nginx, or both (direct,nginx): clients through docs/deployment.md's nginx",
    )
    parser.add_argument(
        "--storm",
        action="store_true",
        help="run the reconnect-storm scenario (bench/storm.py) instead of the broadcast one",
    )
    parser.add_argument("--storm-connections", type=int, default=2000, help="storm: clients")
    parser.add_argument("--storm-messages", type=int, default=100, help="storm: messages (100)")
    parser.add_argument("--storm-rate", type=float, default=5.0, help="storm: messages/s (5)")
    parser.add_argument(
        "--storm-jitter", type=float, default=0.5, help="storm: reconnect pause up to (0.5 s)"
    )
    parser.add_argument(
        "--storm-variants",
        default="shared,admission",
        help="storm: variants to run, of shared, unshared, admission (shared,admission)",
    )
    parser.add_argument(
        "--storm-admission",
        type=float,
        default=300.0,
        help="storm: ADMISSION_RATE of the admission variant (300 connections/s)",
    )
    parser.add_argument(
        "--idle-scenario",
        action="store_true",
        help="run the idle scenario (bench/idle.py) instead of the broadcast one",
    )
    parser.add_argument(
        "--idle-connections", type=int, help="idle: connections (10,000; quick: 1,000)"
    )
    parser.add_argument("--idle-window", type=float, help="idle: CPU window (60 s; quick: 20)")
    parser.add_argument(
        "--idle-code",
        default="",
        help="idle: also run `realtime` from these checkouts, LABEL=PATH[,LABEL=PATH] (A/B)",
    )
    parser.add_argument(
        "--idle-profile",
        action="store_true",
        help="idle: cProfile the server over the window (inflates its CPU figure)",
    )
    parser.add_argument(
        "--idle-server-pings",
        action="store_true",
        help="idle: also run `realtime` with the ASGI server's own WebSocket pings on",
    )
    parser.add_argument("--redis-url", default=redis_url_from_env())
    parser.add_argument("--json", dest="json_path", help="also write the results to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument("--quick", action="store_true", help="smoke run, well under 2 minutes")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {', '.join(TARGETS)}")
    if "asgi-floor" in targets and not args.idle_scenario:
        parser.error("the asgi-floor target is for --idle-scenario only")
    if args.messages is not None and args.messages < 1:
        parser.error("--messages must be at least 1")
    if args.rate <= 0 or args.repeat < 1 or args.client_procs < 1 or args.concurrency < 1:
        parser.error("--rate, --repeat, --client-procs and --concurrency must be positive")
    if args.server and args.servers:
        parser.error("--server and --servers exclude each other")
    servers = _choices(parser, "--servers", args.servers or args.server or "daphne", ASGI_SERVERS)
    via = _choices(parser, "--via", args.via, ROUTES)
    if "nginx" in via and args.nodes != [2]:
        parser.error("--via nginx runs the documented upstream of two nodes: use --nodes 2")
    quick = bool(args.quick)
    return Options(
        connections=args.connections or ([200] if quick else [1000, 5000]),
        messages=args.messages or (20 if quick else 40),
        rate=args.rate,
        nodes=args.nodes,
        targets=targets,
        repeat=args.repeat,
        client_procs=args.client_procs,
        concurrency=args.concurrency,
        drain=args.drain if args.drain is not None else (3.0 if quick else 10.0),
        idle=args.idle if args.idle is not None else (1.5 if quick else 2.0),
        max_drain=args.max_drain if args.max_drain is not None else (15.0 if quick else 45.0),
        redis_url=require_loopback_redis(args.redis_url),
        json_path=args.json_path,
        keep_logs=args.keep_logs,
        quick=quick,
        servers=servers,
        via=via,
        sse_connections=tuple(args.sse_connections or ([200] if quick else [1000])),
        longpoll_connections=tuple(args.longpoll_connections or ([200] if quick else [500])),
        ack_connections=tuple(args.ack_connections or ([200] if quick else [1000])),
        storm=args.storm,
        storm_connections=args.storm_connections,
        storm_messages=args.storm_messages,
        storm_rate=args.storm_rate,
        storm_jitter=args.storm_jitter,
        storm_variants=tuple(v for v in args.storm_variants.split(",") if v),
        storm_admission=args.storm_admission,
        idle_scenario=args.idle_scenario,
        idle_connections=args.idle_connections or (1000 if quick else 10_000),
        idle_window=args.idle_window or (20.0 if quick else 60.0),
        idle_code=_idle_code(parser, args.idle_code),
        idle_profile=args.idle_profile,
        idle_server_pings=args.idle_server_pings,
    )


def _idle_code(parser: argparse.ArgumentParser, text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, (i.strip() for i in text.split(","))):
        label, _, path = item.partition("=")
        if not path or not (Path(path) / "realtime" / "__init__.py").exists():
            parser.error(f"--idle-code: {item!r} is not LABEL=PATH of a checkout with realtime/")
        pairs.append((label, str(Path(path).resolve())))
    return tuple(pairs)


def _choices(
    parser: argparse.ArgumentParser, option: str, text: str, allowed: Sequence[str]
) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not values or any(v not in allowed for v in values):
        parser.error(f"{option}: choose from {', '.join(allowed)}")
    return values
