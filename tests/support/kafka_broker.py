"""A real one-node Apache Kafka 4.x broker (KRaft, combined broker and controller) for tests
and ``make kafka``, started from its Maven Central jars with Java 17: no Docker needed.

The jars are fetched once by Maven (``deploy/kafka/pom.xml``) into the git-ignored
``.cache/kafka/lib``. ``KAFKA_BOOTSTRAP_SERVERS`` skips all of this and uses that cluster.

    python -m tests.support.kafka_broker [--port 9092]   # run until Ctrl-C
    python -m tests.support.kafka_broker fetch           # only fetch the jars
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[2]
POM = REPO / "deploy" / "kafka" / "pom.xml"
DEFAULT_CACHE = REPO / ".cache" / "kafka"

LOG4J2 = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><Console name="out" target="SYSTEM_OUT">
    <PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers>
    <Logger name="kafka.server.KafkaServer" level="INFO"/>
    <Logger name="kafka.server.BrokerServer" level="INFO"/>
    <Root level="WARN"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
"""


def ensure_kafka_jars(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The broker's classpath folder, fetched with Maven on first use. A marker file is
    written last, so a fetch cut short is done again rather than trusted."""
    lib = cache_dir / "lib"
    marker = cache_dir / ".complete"
    if marker.exists() and any(lib.glob("kafka_2.13-*.jar")):
        return lib
    shutil.rmtree(lib, ignore_errors=True)
    lib.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}",
        ],
        check=True,
    )
    marker.write_text(POM.read_text())
    return lib


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalKafkaBroker:
    """A broker in a temporary data directory on loopback ports.

    ``kill()`` then ``start()`` restarts it on the same ports with the same data, for
    fault-injection tests; ``stop()`` ends it and removes the data."""

    def __init__(self, port: int | None = None, cache_dir: Path = DEFAULT_CACHE):
        self.port = port or _free_port()
        self.controller_port = _free_port()
        self._cache_dir = cache_dir
        self._dir = Path(tempfile.mkdtemp(prefix="meterline-kafka-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._formatted = False

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self._dir / "broker.log"

    def _write_config(self) -> Path:
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self._dir / "data"),
            "num.partitions": "4",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.flush.interval.messages": "9223372036854775807",
        }
        path = self._dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self._dir / "log4j2.xml").write_text(LOG4J2)
        return path

    def _java(self, lib: Path, *args: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._dir / 'log4j2.xml'}",
            "-cp",
            f"{lib}/*",
            *args,
        ]

    def start(self, timeout: float = 90) -> None:
        lib = ensure_kafka_jars(self._cache_dir)
        config = self._write_config()
        if not self._formatted:
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            subprocess.run(
                self._java(
                    lib, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)
                ),
                check=True,
                capture_output=True,
            )
            self._formatted = True
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self._java(lib, "kafka.Kafka", str(config)), stdout=log, stderr=log
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"Kafka exited early:\n{self.log_file.read_text()[-4000:]}")
            # The broker logs this line once it is registered, unfenced and serving clients.
            if "Transition from STARTING to STARTED" in self.log_file.read_text():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(
            f"Kafka did not start in {timeout}s:\n{self.log_file.read_text()[-4000:]}"
        )

    def kill(self) -> None:
        """SIGKILL, keeping the data: a crash, for fault-injection tests."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> LocalKafkaBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def kafka_bootstrap_from_env_or_start() -> tuple[str, LocalKafkaBroker | None]:
    """The cluster named by KAFKA_BOOTSTRAP_SERVERS, or a fresh local broker."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        return existing, None
    broker = LocalKafkaBroker()
    broker.start()
    return broker.bootstrap_servers, broker


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("action", nargs="?", choices=["run", "fetch"], default="run")
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args()
    if args.action == "fetch":
        print(ensure_kafka_jars())
        return
    broker = LocalKafkaBroker(port=args.port)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    broker.start()
    print(f"Kafka broker on {broker.bootstrap_servers} (Ctrl-C stops it)", flush=True)
    try:
        while not stop:
            time.sleep(0.5)
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
