"""The ``meterline`` console script: one command per service, plus tools.

Each command imports only what it runs, so ``meterline report`` starts fast and a service
never loads another service's code."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meterline.common.config import GatewayConfig

SIMULATOR_PORT = 8090


def _serve(app: object, host: str, port: int, log_level: str) -> None:
    import uvicorn

    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level=log_level.lower(),
        access_log=False,
        # On SIGTERM, give in-flight requests and streams this long to finish.
        timeout_graceful_shutdown=30,
    )


def _load_config(path: Path) -> GatewayConfig:
    from meterline.common.config import load_config

    if not path.exists():
        raise SystemExit(
            f"no configuration at {path}: create one with `meterline init --config {path}` "
            "or point METERLINE_CONFIG_FILE at it"
        )
    return load_config(path)


def cmd_all_in_one(args: argparse.Namespace) -> int:
    from meterline.all_in_one.app import AllInOne, AllInOneSettings

    settings = AllInOneSettings.from_env()
    config = _load_config(settings.consumer.config_file)
    gateway = settings.ingress
    host, port = args.host or gateway.host, args.port or gateway.port
    _serve(AllInOne(settings, config), host, port, settings.consumer.log_level)
    return 0


def cmd_ingress(args: argparse.Namespace) -> int:
    from meterline.ingress.app import create_app
    from meterline.ingress.publishing.kafka import kafka_publisher
    from meterline.ingress.settings import IngressSettings

    settings = IngressSettings()
    if not settings.kafka_bootstrap_servers:
        raise SystemExit("meterline ingress needs KAFKA_BOOTSTRAP_SERVERS (or use all-in-one)")
    config = _load_config(settings.config_file)
    publisher = kafka_publisher(settings)
    host, port = args.host or settings.host, args.port or settings.port
    _serve(create_app(settings, config, publisher), host, port, settings.log_level)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from meterline.query.app import create_app
    from meterline.query.settings import QuerySettings

    settings = QuerySettings()
    config = _load_config(settings.config_file)
    host, port = args.host or settings.query_host, args.port or settings.query_port
    _serve(create_app(settings, config=config), host, port, settings.log_level)
    return 0


def cmd_consumer(args: argparse.Namespace) -> int:
    from meterline.consumer.main import main

    main()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from meterline.common.clickhouse import connect
    from meterline.common.migrations import migrate
    from meterline.common.settings import CommonSettings

    settings = CommonSettings()
    applied = migrate(connect(settings.resolved_clickhouse_url(), settings.clickhouse_database))
    print("\n".join(f"applied {name}" for name in applied) or "nothing to apply")
    return 0


def cmd_rollups(args: argparse.Namespace) -> int:
    from meterline.common.clickhouse import connect
    from meterline.consumer.rebuild import RebuildError, rebuild
    from meterline.consumer.settings import ConsumerSettings

    settings = ConsumerSettings()
    prices = None
    if args.reprice:
        from meterline.consumer.assemble import enricher

        prices = enricher(_load_config(settings.config_file))
    client = connect(settings.resolved_clickhouse_url(), settings.clickhouse_database)
    try:
        result = rebuild(client, args.from_date, args.to_date, prices)
    except RebuildError as error:
        raise SystemExit(f"rollups rebuild: {error}") from None
    if args.reprice:
        print(f"re-priced {result.repriced} raw events")
    for table, rows in result.rollups.items():
        print(f"{table}: {rows} rows for {args.from_date}..{args.to_date}")
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    from meterline.simulator.app import create_app

    _serve(create_app(), args.host or "127.0.0.1", args.port or SIMULATOR_PORT, "warning")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from meterline.demo import main

    return main(requests=args.requests)


def cmd_keys(args: argparse.Namespace) -> int:
    from meterline.common.config import hash_key, new_key

    if args.action == "hash":
        print(hash_key(args.key))
        return 0
    key = new_key()
    print(f"key (shown once, store it now): {key}", file=sys.stderr)
    print(f'[[teams.keys]]\nname = "{args.name}"\nsha256 = "{hash_key(key)}"')
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from meterline.common.config import hash_key, new_key

    path: Path = args.config
    if path.exists():
        print(f"{path} exists; left as it is")
        return 0
    key = new_key()
    path.write_text(
        INIT_TEMPLATE.format(team=args.team, sha256=hash_key(key), simulator=args.simulator_url)
    )
    print(f"wrote {path}\ngateway key for team {args.team!r} (shown once): {key}")
    return 0


INIT_TEMPLATE = """\
# Meterline gateway configuration. Gateway keys are stored as SHA-256 hashes
# (`meterline keys new --name NAME` prints a new one); provider keys are read from the
# environment variables named here, never written into this file.

[[providers]]
slug = "openai"
wire = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"

[[providers]]
slug = "anthropic"
wire = "anthropic"
base_url = "https://api.anthropic.com/v1"
api_key_env = "ANTHROPIC_API_KEY"

# The bundled provider simulator (`meterline simulator`), priced as OpenAI. Like a real
# provider it refuses requests without a key: any non-empty METERLINE_SIMULATOR_KEY does
# (`make run` sets one).
[[providers]]
slug = "simulator"
wire = "openai"
base_url = "{simulator}"
api_key_env = "METERLINE_SIMULATOR_KEY"
prices_as = "openai"

[[teams]]
id = "{team}"

[[teams.keys]]
name = "default"
sha256 = "{sha256}"
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    for name, handler, help_text in (
        ("all-in-one", cmd_all_in_one, "ingress + consumer + query in one process (embedded)"),
        ("ingress", cmd_ingress, "the gateway: proxies LLM calls, publishes usage to Kafka"),
        ("query", cmd_query, "serves GET /v1/report and /v1/generation"),
        ("simulator", cmd_simulator, "a fake LLM provider speaking the real wire formats"),
    ):
        sub = commands.add_parser(name, help=help_text)
        # Unset: the service's settings (METERLINE_HOST and METERLINE_PORT for the gateway,
        # METERLINE_QUERY_HOST and METERLINE_QUERY_PORT for the query service).
        sub.add_argument("--host", default=None)
        sub.add_argument("--port", type=int, default=None)
        sub.set_defaults(handler=handler)

    commands.add_parser("consumer", help="Kafka -> ClickHouse consumer group member").set_defaults(
        handler=cmd_consumer
    )
    commands.add_parser("migrate", help="apply ClickHouse migrations").set_defaults(
        handler=cmd_migrate
    )

    rollups = commands.add_parser("rollups", help="maintain the rollup tables")
    rollups_actions = rollups.add_subparsers(dest="action", required=True)
    rebuild = rollups_actions.add_parser(
        "rebuild",
        help="recompute the rollups of a range of UTC days from the raw events",
        description="Recompute every rollup for the UTC days FROM..TO (inclusive) from the raw "
        "events; with --reprice, price the raw events again first (unknown prices, changed "
        "overrides). Reports over the range read nothing while it runs; rebuild days that no "
        "longer receive events, or stop the consumers first.",
    )
    rebuild.add_argument("--from", dest="from_date", type=date.fromisoformat, required=True)
    rebuild.add_argument("--to", dest="to_date", type=date.fromisoformat, required=True)
    rebuild.add_argument(
        "--reprice", action="store_true", help="re-price the raw events with current prices"
    )
    rollups.set_defaults(handler=cmd_rollups)

    demo = commands.add_parser("demo", help="end-to-end demo on the embedded default")
    demo.add_argument("--requests", type=int, default=300)
    demo.set_defaults(handler=cmd_demo)

    # Listed here for `meterline --help`; its options are the report client's own, and
    # `main` hands them over before this parser sees them (an argparse REMAINDER would
    # refuse every one that starts with a dash).
    commands.add_parser("report", help="print a usage report (meterline report --help)")

    keys = commands.add_parser("keys", help="make or hash gateway keys")
    keys_actions = keys.add_subparsers(dest="action", required=True)
    new = keys_actions.add_parser("new", help="print a new key and its config entry")
    new.add_argument("--name", default="default")
    hashed = keys_actions.add_parser("hash", help="print the SHA-256 of a key")
    hashed.add_argument("key")
    keys.set_defaults(handler=cmd_keys)

    init = commands.add_parser("init", help="write a starter configuration file")
    init.add_argument("--config", type=Path, default=Path("meterline.toml"))
    init.add_argument("--team", default="default")
    init.add_argument("--simulator-url", default="http://127.0.0.1:8090/v1")
    init.set_defaults(handler=cmd_init)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request at INFO: one line per report fetched or health check would
    # drown the demo's output and the report client's.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        from meterline.query.report_client import main as report

        return report(argv[1:])
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
