"""Run the benchmarks in sequence and splice their tables into BENCHMARKS.md.

    python -m bench.run [--quick] [--only NAME ...] [--out DIR] [--no-splice]
    python -m bench.run --splice-existing [--only NAME ...]

Each benchmark runs as its own process (``python -m bench.<module>``): the embedded
ClickHouse allows one engine per process, and a fresh process gives each one a clean peak
RSS. Each writes ``DIR/<name>.json`` and ``DIR/<name>.md``; every ``<name>.md`` written
during the run replaces the text between ``<!-- bench:<name> -->`` and
``<!-- /bench:<name> -->`` in BENCHMARKS.md. A quick run splices nothing unless asked
(``--splice``): its tiny sizes say nothing about performance."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

from bench.common import DEFAULT_OUT, REPO

# (module, the result names it writes), in the order they run.
MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("consumer_throughput", ("consumer_throughput", "engine_ceiling")),
    ("report_latency", ("report_latency",)),
    ("ingress_overhead", ("ingress_overhead",)),
    ("freshness", ("freshness",)),
    ("budget_check", ("budget_check",)),
    ("memory", ("memory",)),
)
NAMES = tuple(name for _, names in MODULES for name in names)
BENCHMARKS_MD = REPO / "BENCHMARKS.md"


def splice(document: str, name: str, fragment: str) -> str:
    """Replace what sits between the two markers of ``name``; an error if they are missing."""
    pattern = re.compile(
        rf"(<!-- bench:{re.escape(name)} -->\n).*?(<!-- /bench:{re.escape(name)} -->)", re.DOTALL
    )
    if not pattern.search(document):
        raise ValueError(f"BENCHMARKS.md has no <!-- bench:{name} --> ... markers")
    return pattern.sub(lambda m: m.group(1) + fragment.rstrip() + "\n" + m.group(2), document)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds each")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=", ".join(NAMES))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--markdown", type=Path, default=BENCHMARKS_MD)
    splicing = parser.add_mutually_exclusive_group()
    splicing.add_argument("--splice", dest="splice", action="store_true", default=None)
    splicing.add_argument("--no-splice", dest="splice", action="store_false")
    parser.add_argument(
        "--splice-existing",
        action="store_true",
        help="run nothing: splice the results already in DIR (of a benchmark run by hand "
        "with options of its own, say) into BENCHMARKS.md",
    )
    args = parser.parse_args(argv)
    splice_results = not args.quick if args.splice is None else args.splice

    wanted = set(args.only or NAMES)
    if args.splice_existing:
        document = args.markdown.read_text()
        for name in NAMES:
            fragment = args.out / f"{name}.md"
            if name in wanted and fragment.is_file():
                document = splice(document, name, fragment.read_text())
                print(f"spliced {fragment}", flush=True)
        args.markdown.write_text(document)
        return 0
    failed: list[str] = []
    for module, names in MODULES:
        if not wanted.intersection(names):
            continue
        if importlib.util.find_spec(f"bench.{module}") is None:
            print(f"bench.{module}: not written yet, skipped", flush=True)
            continue
        command = [sys.executable, "-m", f"bench.{module}", "--out", str(args.out)]
        if args.quick:
            command.append("--quick")
        print(f"==> {' '.join(command[1:])}", flush=True)
        started = time.time()
        done = subprocess.run(command, cwd=REPO, check=False)  # noqa: S603 - our own modules
        print(f"<== bench.{module}: exit {done.returncode} in {time.time() - started:.0f}s")
        if done.returncode != 0:
            failed.append(module)
            continue
        if splice_results:
            document = args.markdown.read_text()
            for name in names:
                fragment = args.out / f"{name}.md"
                if fragment.is_file() and fragment.stat().st_mtime >= started:
                    document = splice(document, name, fragment.read_text())
            args.markdown.write_text(document)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
