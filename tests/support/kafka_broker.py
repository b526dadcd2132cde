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
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType, TracebackType

REPO = Path(__file__).resolve().parents[2]
POM = REPO / "deploy" / "kafka" / "pom.xml"
DEFAULT_CACHE = REPO / ".cache" / "kafka"

# BrokerServer logs this once it is registered with the controller, caught up on metadata and
# unfenced: from then on clients get a leader for new partitions. The port alone opens earlier.
READY_LINE = "Transition from STARTING to STARTED"

# Root at WARN keeps the file small; BrokerServer stays at INFO only for READY_LINE.
LOG4J2 = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><Console name="out" target="SYSTEM_OUT">
    <PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers>
    <Logger name="kafka.server.BrokerServer" level="INFO"/>
    <Root level="WARN"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
"""


def ensure_kafka_jars(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The broker's classpath folder (``cache_dir/lib``), fetched with Maven on first use.

    The marker holds the pom it was fetched for, so bumping the Kafka version refetches, and it
    is written last, so a fetch cut short is redone rather than trusted. Fetching goes to a side
    folder that is swapped in whole, under a lock, so parallel test workers never see half a
    classpath."""
    lib = cache_dir / "lib"
    marker = cache_dir / ".complete"
    pom = POM.read_text()

    def fetched() -> bool:
        return marker.is_file() and marker.read_text() == pom and any(lib.glob("kafka_2.13-*.jar"))

    if fetched():
        return lib
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if fetched():
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars; install it")
        partial = cache_dir / "lib.partial"
        shutil.rmtree(partial, ignore_errors=True)
        marker.unlink(missing_ok=True)
        fetch = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={partial}",
            ],
            # Captured: even with -q, Maven's console prints stray ANSI reset codes.
            capture_output=True,
            text=True,
        )
        if fetch.returncode != 0:
            raise RuntimeError(f"mvn could not fetch the Kafka jars:\n{fetch.stdout}{fetch.stderr}")
        shutil.rmtree(lib, ignore_errors=True)
        partial.rename(lib)
        marker.write_text(pom)
    return lib


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cluster_id() -> str:
    """Kafka's own format: a random UUID as 22 characters of unpadded URL-safe base64, never
    starting with "-" (as Kafka's ``Uuid.randomUuid`` ensures): the storage tool would read
    such an id as an option and refuse to format, one start in 64."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class LocalKafkaBroker:
    """A broker in a temporary data directory on loopback ports.

    ``kill()`` (a crash) or ``restart()`` (a clean stop), then ``start()``, brings it back on
    the same ports with the same data, for fault-injection tests. ``stop()`` ends it and
    removes the data; a later ``start()`` begins with an empty cluster."""

    def __init__(
        self,
        port: int | None = None,
        cache_dir: Path = DEFAULT_CACHE,
        heap: str = "512m",
    ) -> None:
        self.port = port or _free_port()
        self.controller_port = _free_port()
        self._cache_dir = cache_dir
        self._heap = heap
        self._dir = Path(tempfile.mkdtemp(prefix="meterline-kafka-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._formatted = False

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self._dir

    @property
    def log_file(self) -> Path:
        return self._dir / "broker.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> Path:
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # Static voters rather than a dynamic quorum: one node never changes membership,
            # and it needs no --standalone bookkeeping when the same storage is restarted.
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
            # Fewer __consumer_offsets partitions than the default 50: a noticeably faster
            # first group join, and tests never have enough groups to need more.
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Crash tests restart consumers with short sessions, so the group hands a killed
            # member's partitions on in a second or two rather than the default minimum 6 s.
            "group.min.session.timeout.ms": "1000",
            # After a kill() the controller refuses the new incarnation of node 1 until the old
            # one's session expires (default 9 s); a short session keeps crash tests quick.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        }
        path = self._dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self._dir / "log4j2.xml").write_text(LOG4J2)
        return path

    def _java(self, lib: Path, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self._heap}",
            # A short-lived single-node broker gains nothing from G1 or the C2 compiler, and
            # both cost start-up time.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._dir / 'log4j2.xml'}",
            "-cp",
            f"{lib}/*",
            *args,
        ]

    def _log_tail(self, since: int = 0, chars: int = 4000) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(since)
                return log.read().decode(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 90) -> None:
        """Start the broker (formatting the storage the first time) and wait until it serves."""
        if self.running:
            return
        lib = ensure_kafka_jars(self._cache_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if not self._formatted:
            formatted = subprocess.run(
                self._java(
                    lib, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)
                ),
                capture_output=True,
                text=True,
            )
            if formatted.returncode != 0:
                raise RuntimeError(
                    f"kafka-storage format failed:\n{formatted.stdout}\n{formatted.stderr}"
                )
            self._formatted = True
        # On a restart the log already holds the previous run's READY_LINE; only look past it.
        log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self._java(lib, "kafka.Kafka", str(config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self._wait_ready(timeout, log_start)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float, log_start: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Kafka exited with {self._process.returncode} while starting; "
                    f"{self.log_file}:\n{self._log_tail(log_start)}"
                )
            if READY_LINE in self._log_tail(log_start, chars=1 << 20):
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(
            f"Kafka did not start within {timeout}s; {self.log_file}:\n{self._log_tail(log_start)}"
        )

    def _end(self, sig: signal.Signals, grace: float) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, keeping the data: a crash, for fault-injection tests."""
        self._end(signal.SIGKILL, grace=10)

    def restart(self, timeout: float = 90) -> None:
        """A clean shutdown and start again on the same ports with the same data."""
        self._end(signal.SIGTERM, grace=30)
        self.start(timeout)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 30 s) and remove the data directory."""
        self._end(signal.SIGTERM, grace=30)
        shutil.rmtree(self._dir, ignore_errors=True)
        self._formatted = False

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
    """The cluster named by KAFKA_BOOTSTRAP_SERVERS (and None), or a fresh local broker's
    address and the broker, which the caller must ``stop()``."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        return existing, None
    broker = LocalKafkaBroker()
    broker.start()
    return broker.bootstrap_servers, broker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.kafka_broker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", nargs="?", choices=["run", "fetch"], default="run")
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args(argv)
    if args.action == "fetch":
        started = time.monotonic()
        lib = ensure_kafka_jars()
        print(f"Kafka jars in {lib} ({time.monotonic() - started:.1f}s)")
        return 0

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    # Handlers go in before start() so a Ctrl-C during start-up still removes the data dir.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    broker = LocalKafkaBroker(port=args.port)
    try:
        started = time.monotonic()
        try:
            broker.start()
        except RuntimeError:
            # Ctrl-C reaches the JVM too (same process group), which then exits mid-start.
            if stopping:
                return 130
            raise
        print(
            f"Kafka broker on {broker.bootstrap_servers} "
            f"(ready in {time.monotonic() - started:.1f}s, log {broker.log_file}); "
            "Ctrl-C stops it",
            flush=True,
        )
        while not stopping:
            if not broker.running:
                print(f"Kafka exited unexpectedly:\n{broker._log_tail()}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
