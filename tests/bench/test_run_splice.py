"""``bench.run`` splices each benchmark's table between its markers in BENCHMARKS.md and
leaves the text around them alone; a missing marker is an error, not a silent skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run

DOCUMENT = """# Benchmarks

Prose written by hand.

<!-- bench:memory -->
_not run yet_
<!-- /bench:memory -->

<!-- bench:freshness -->
old freshness
<!-- /bench:freshness -->
"""


def test_splice_replaces_only_what_sits_between_the_markers() -> None:
    spliced = run.splice(DOCUMENT, "memory", "| a | b |\n| --- | ---: |\n")
    assert "_not run yet_" not in spliced
    assert "<!-- bench:memory -->\n| a | b |\n| --- | ---: |\n<!-- /bench:memory -->" in spliced
    assert "Prose written by hand." in spliced
    assert "old freshness" in spliced


def test_splice_refuses_a_document_without_the_markers() -> None:
    with pytest.raises(ValueError, match="bench:ingress_overhead"):
        run.splice(DOCUMENT, "ingress_overhead", "table")


def test_splice_existing_runs_nothing_and_splices_the_selected_results(tmp_path: Path) -> None:
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text(DOCUMENT)
    out = tmp_path / "results"
    out.mkdir()
    (out / "memory.md").write_text("memory table\n")
    (out / "freshness.md").write_text("new freshness\n")

    argv = ["--splice-existing", "--only", "memory", "--out", str(out), "--markdown", str(markdown)]
    assert run.main(argv) == 0

    text = markdown.read_text()
    assert "<!-- bench:memory -->\nmemory table\n<!-- /bench:memory -->" in text
    assert "old freshness" in text  # not selected
    assert not (out / "memory.json").exists()  # nothing ran
