"""Every option of every ``meterline`` command explains itself, and ``--version`` answers."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version

from meterline.cli import build_parser
from meterline.query.report_client import build_parser as report_parser


def walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_option_of_every_command_has_help() -> None:
    actions = [*walk(build_parser(), "meterline"), *walk(report_parser(), "meterline report")]
    missing = [f"{path} {a.dest}" for path, a in actions if not a.help]
    assert not missing, f"options without help: {missing}"
    commands = {path for path, _ in actions}
    # The walk really went down every level, the report client's options included.
    assert {"meterline doctor", "meterline rollups rebuild", "meterline report"} <= commands


def test_version_is_the_package_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meterline.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"meterline {version('meterline')}"


def test_the_demo_progress_is_plain_lines_off_a_terminal() -> None:
    import io

    from meterline.demo import Progress

    stream = io.StringIO()
    progress = Progress(20, stream)
    for _ in range(20):
        progress.advance()
    assert stream.getvalue().splitlines() == [f"  {n}/20 requests done" for n in range(2, 21, 2)]
