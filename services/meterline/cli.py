"""The ``meterline`` console script: one command per service, plus tools.

Each command imports only what it runs, so ``meterline report`` starts fast and a service
never loads another service's code."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from meterline.common.config import GatewayConfig

SIMULATOR_PORT = 8090


def _serve(app: object, host: str, port: int, log_level: str) -> None:
    import uvicorn

    from meterline.common.logs import current_config

    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        # The same handlers and format as every other line: uvicorn would apply its own.
        log_config=current_config(),
        log_level=log_level.lower(),
        access_log=False,
        # On SIGTERM, give in-flight requests and streams this long to finish.
        timeout_graceful_shutdown=30,
    )


def _load_config(path: Path) -> GatewayConfig:
    from meterline.common.config import load_config

    return load_config(path)


def _needs_kafka(servers: str | None, command: str) -> None:
    from meterline.common.config import ConfigurationError

    if not servers:
        raise ConfigurationError(
            f"{command} needs KAFKA_BOOTSTRAP_SERVERS (host:port of the Kafka brokers)"
            + (" or use all-in-one" if command == "ingress" else "")
        )


def cmd_all_in_one(args: argparse.Namespace) -> int:
    from meterline.all_in_one.app import AllInOne, AllInOneSettings
    from meterline.common.preflight import ensure_chdb_free

    settings = AllInOneSettings.from_env()
    config = _load_config(settings.consumer.config_file)
    ensure_chdb_free(settings.consumer.resolved_clickhouse_url())
    gateway = settings.ingress
    host, port = args.host or gateway.host, args.port or gateway.port
    _serve(AllInOne(settings, config), host, port, settings.consumer.log_level)
    return 0


def cmd_ingress(args: argparse.Namespace) -> int:
    from meterline.ingress.app import create_app
    from meterline.ingress.publishing.kafka import kafka_publisher
    from meterline.ingress.settings import IngressSettings

    settings = IngressSettings()
    _needs_kafka(settings.kafka_bootstrap_servers, "ingress")
    config = _load_config(settings.config_file)
    publisher = kafka_publisher(settings)
    host, port = args.host or settings.host, args.port or settings.port
    _serve(create_app(settings, config, publisher), host, port, settings.log_level)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from meterline.common.preflight import ensure_chdb_free
    from meterline.query.app import create_app
    from meterline.query.settings import QuerySettings

    settings = QuerySettings()
    config = _load_config(settings.config_file)
    ensure_chdb_free(settings.resolved_clickhouse_url())
    host, port = args.host or settings.query_host, args.port or settings.query_port
    _serve(create_app(settings, config=config), host, port, settings.log_level)
    return 0


def cmd_consumer(args: argparse.Namespace) -> int:
    from meterline.common.preflight import ensure_chdb_free
    from meterline.consumer.main import main
    from meterline.consumer.settings import ConsumerSettings

    settings = ConsumerSettings()
    _needs_kafka(settings.kafka_bootstrap_servers, "consumer")
    _load_config(settings.config_file)
    ensure_chdb_free(settings.resolved_clickhouse_url())
    main()
    return 0


def _warehouse(url: str, database: str) -> Client:
    """A client on the warehouse, or a one-line failure naming it."""
    from clickhouse_connect.driver.exceptions import OperationalError, ProgrammingError

    from meterline.common.clickhouse import connect
    from meterline.common.preflight import ensure_chdb_free, warehouse_failure

    ensure_chdb_free(url)
    try:
        return connect(url, database)
    except OperationalError as error:
        raise warehouse_failure(url, error) from None
    except ProgrammingError:
        # Another process may have opened the directory since the check above.
        ensure_chdb_free(url)
        raise


def cmd_migrate(args: argparse.Namespace) -> int:
    from meterline.common.migrations import migrate
    from meterline.common.settings import CommonSettings

    settings = CommonSettings()
    applied = migrate(_warehouse(settings.resolved_clickhouse_url(), settings.clickhouse_database))
    print("\n".join(f"applied {name}" for name in applied) or "nothing to apply")
    return 0


def cmd_rollups(args: argparse.Namespace) -> int:
    from meterline.consumer.rebuild import RebuildError, rebuild
    from meterline.consumer.settings import ConsumerSettings

    settings = ConsumerSettings()
    prices = None
    if args.reprice:
        from meterline.consumer.assemble import enricher

        prices = enricher(_load_config(settings.config_file))
    client = _warehouse(settings.resolved_clickhouse_url(), settings.clickhouse_database)
    try:
        result = rebuild(client, args.from_date, args.to_date, prices)
    except RebuildError as error:
        raise SystemExit(f"rollups rebuild: {error}") from None
    if args.reprice:
        print(f"re-priced {result.repriced} raw events")
    for table, rows in result.rollups.items():
        print(f"{table}: {rows} rows for {args.from_date}..{args.to_date}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from meterline.doctor import main

    return main(timeout=args.timeout)


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
    parser = argparse.ArgumentParser(
        prog="meterline",
        description="Usage and cost reporting for AI gateway traffic.",
        epilog="Settings come from the environment (METERLINE_*, KAFKA_BOOTSTRAP_SERVERS, "
        "CLICKHOUSE_URL; METERLINE_LOG_FORMAT=json|text). Exit status: 0 done, 1 a failure "
        "at run time, 2 bad configuration or usage.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, handler, help_text, settings_names in (
        (
            "all-in-one",
            cmd_all_in_one,
            "ingress + consumer + query in one process (embedded)",
            ("METERLINE_HOST, 127.0.0.1", "METERLINE_PORT, 8080"),
        ),
        (
            "ingress",
            cmd_ingress,
            "the gateway: proxies LLM calls, publishes usage to Kafka",
            ("METERLINE_HOST, 127.0.0.1", "METERLINE_PORT, 8080"),
        ),
        (
            "query",
            cmd_query,
            "serves GET /v1/report and /v1/generation",
            ("METERLINE_QUERY_HOST, 127.0.0.1", "METERLINE_QUERY_PORT, 8081"),
        ),
        (
            "simulator",
            cmd_simulator,
            "a fake LLM provider speaking the real wire formats",
            ("127.0.0.1", str(SIMULATOR_PORT)),
        ),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        host_default, port_default = settings_names
        sub.add_argument(
            "--host", default=None, help=f"address to listen on (default: {host_default})"
        )
        sub.add_argument(
            "--port", type=int, default=None, help=f"port to listen on (default: {port_default})"
        )
        sub.set_defaults(handler=handler)

    commands.add_parser(
        "consumer",
        help="Kafka -> ClickHouse consumer group member",
        description="Read usage events from Kafka (KAFKA_BOOTSTRAP_SERVERS), price them and "
        "write them to ClickHouse in batches.",
    ).set_defaults(handler=cmd_consumer)
    commands.add_parser(
        "migrate",
        help="apply ClickHouse migrations",
        description="Apply the ClickHouse migrations not applied yet (CLICKHOUSE_URL, or the "
        "embedded engine under METERLINE_DATA_DIR).",
    ).set_defaults(handler=cmd_migrate)

    rollups = commands.add_parser(
        "rollups", help="maintain the rollup tables", description="Maintain the rollup tables."
    )
    rollups_actions = rollups.add_subparsers(dest="action", required=True, metavar="ACTION")
    rebuild = rollups_actions.add_parser(
        "rebuild",
        help="recompute the rollups of a range of UTC days from the raw events",
        description="Recompute every rollup for the UTC days FROM..TO (inclusive) from the raw "
        "events; with --reprice, price the raw events again first (unknown prices, changed "
        "overrides). Reports over the range read nothing while it runs; rebuild days that no "
        "longer receive events, or stop the consumers first.",
    )
    rebuild.add_argument(
        "--from",
        dest="from_date",
        type=date.fromisoformat,
        required=True,
        metavar="YYYY-MM-DD",
        help="first UTC day to rebuild",
    )
    rebuild.add_argument(
        "--to",
        dest="to_date",
        type=date.fromisoformat,
        required=True,
        metavar="YYYY-MM-DD",
        help="last UTC day to rebuild (inclusive)",
    )
    rebuild.add_argument(
        "--reprice", action="store_true", help="re-price the raw events with current prices"
    )
    rollups.set_defaults(handler=cmd_rollups)

    demo = commands.add_parser(
        "demo",
        help="end-to-end demo on the embedded default",
        description="Start the simulator and an all-in-one in a temporary directory, send "
        "requests through them with the openai SDK, print the reports and check their totals.",
    )
    demo.add_argument(
        "--requests",
        type=int,
        default=300,
        help="how many requests to send through the gateway (default: %(default)s)",
    )
    demo.set_defaults(handler=cmd_demo)

    doctor = commands.add_parser(
        "doctor",
        help="check the configuration, Kafka, ClickHouse and the providers",
        description="Check what the services need: the configuration file, Kafka, ClickHouse "
        "and its migrations, each provider's address and key variable. One line per check "
        "(OK, WARN or FAIL, and what to fix); exit status 1 when a check fails.",
    )
    doctor.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        help="seconds to wait for each service or provider (default: %(default)s)",
    )
    doctor.set_defaults(handler=cmd_doctor)

    # Listed here for `meterline --help`; its options are the report client's own, and
    # `main` hands them over before this parser sees them (an argparse REMAINDER would
    # refuse every one that starts with a dash).
    commands.add_parser("report", help="print a usage report (meterline report --help)")

    keys = commands.add_parser(
        "keys", help="make or hash gateway keys", description="Make or hash gateway keys."
    )
    keys_actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = keys_actions.add_parser(
        "new",
        help="print a new key and its config entry",
        description="Print a new gateway key (to stderr, once) and the [[teams.keys]] entry "
        "holding its hash (to stdout).",
    )
    new.add_argument(
        "--name", default="default", help="the key's name in the entry (default: %(default)s)"
    )
    hashed = keys_actions.add_parser(
        "hash", help="print the SHA-256 of a key", description="Print the SHA-256 of a key."
    )
    hashed.add_argument("key", help="the gateway key to hash")
    keys.set_defaults(handler=cmd_keys)

    init = commands.add_parser(
        "init",
        help="write a starter configuration file",
        description="Write a starter configuration file with the OpenAI, Anthropic and "
        "simulator providers and one team with one gateway key (printed once).",
    )
    init.add_argument(
        "--config",
        type=Path,
        default=Path("meterline.toml"),
        help="where to write it (default: %(default)s); an existing file is left as it is",
    )
    init.add_argument("--team", default="default", help="the team's id (default: %(default)s)")
    init.add_argument(
        "--simulator-url",
        default="http://127.0.0.1:8090/v1",
        help="the simulator provider's base URL (default: %(default)s)",
    )
    init.set_defaults(handler=cmd_init)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("meterline")
    except PackageNotFoundError:
        return "unknown"


_TOOL_QUIET = {"clickhouse_connect": "ERROR", "urllib3": "ERROR"}

QUIET_LOGGERS: dict[str | None, dict[str, str]] = {
    # One-shot tools report a warehouse that does not answer in their own one line; the
    # clients' warnings before it would only repeat it.
    "migrate": _TOOL_QUIET,
    "rollups": _TOOL_QUIET,
    "doctor": {**_TOOL_QUIET, "aiokafka": "CRITICAL", "kafka": "CRITICAL"},
    "demo": {"openai": "WARNING"},
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] != "report" else None
    try:
        from meterline.common.logs import LogSettings, configure_logging

        logs = LogSettings()
        configure_logging(logs.log_format, logs.log_level, QUIET_LOGGERS.get(command))
        if argv[:1] == ["report"]:
            from meterline.query.report_client import main as report

            return report(argv[1:])
        args = build_parser().parse_args(argv)
        result: int = args.handler(args)
        return result
    except Exception as error:
        described = _describe(error)
        if described is None:
            raise
        status, message = described
        print(f"meterline{' ' + command if command else ''}: {message}", file=sys.stderr)
        return status


def _describe(error: Exception) -> tuple[int, str] | None:
    """Exit status and one line for the failures an operator fixes themselves: 2 for
    configuration, 1 for what was not reached or not free at run time."""
    from pydantic import ValidationError

    from meterline.common.config import ConfigurationError
    from meterline.common.preflight import StartupFailure, warehouse_failure
    from meterline.common.settings import settings_error

    if isinstance(error, ConfigurationError):
        return 2, str(error)
    if isinstance(error, ValidationError):
        line = settings_error(error)
        return None if line is None else (2, line)
    if isinstance(error, StartupFailure):
        return 1, str(error)
    from clickhouse_connect.driver.exceptions import OperationalError

    if isinstance(error, OperationalError):
        from meterline.common.settings import CommonSettings

        return 1, str(warehouse_failure(CommonSettings().resolved_clickhouse_url(), error))
    return None


if __name__ == "__main__":
    sys.exit(main())
