"""The measured blocks of docs/benchmarks.md, rewritten by the benchmark commands (`--doc`).

Each command owns one block between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`: `make bench`
replaces what is inside with the tables it just measured, and the prose around the blocks (what the
numbers mean, what changed because of them) stays as people wrote it. A document without the block
gets it appended under its own heading, so a fresh `docs/benchmarks.md` fills itself.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import OutputWrapper
from django.utils import timezone

from lightbulb_site.atomic import atomic_write


class BenchError(ValueError):
    """A benchmark that cannot run as asked (a missing dataset folder, a bad option); shown as a command error."""


class BenchDocError(BenchError):
    """The document has a broken block (an end marker before its start, or one marker without the other)."""


class Bench:
    """A benchmark driven by its management command, writing progress to the command's output."""

    def __init__(self, stdout: OutputWrapper | TextIO, stderr: OutputWrapper | TextIO) -> None:
        self.stdout, self.stderr = stdout, stderr

    @staticmethod
    def datasets_folder(options: dict[str, Any]) -> Path:
        """`--datasets`, which must exist (../shared/datasets by default)."""
        datasets = Path(options["datasets"])
        if not datasets.is_dir():
            raise BenchError(f"datasets folder not found: {datasets}")
        return datasets


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def provenance(command: str, machine: dict) -> str:
    """One line saying which command wrote the block, when, and on what."""
    parts = [f"{machine['cpus']} cores" if machine.get("cpus") else "",
             f"Python {machine.get('python') or platform.python_version()}",
             f"torch {machine['torch']}" if machine.get("torch") else "",
             f"{machine['threads']} torch threads" if machine.get("threads") else ""]
    return (f"*Written by `{command}` on {timezone.now():%Y-%m-%d}; "
            f"{', '.join(p for p in parts if p)}.*")


def write_block(doc: Path, name: str, markdown: str, *, title: str) -> None:
    """Put `markdown` inside block `name` of `doc`, or append the block under `## title` if it has none."""
    start, end = markers(name)
    body = f"{start}\n{markdown.strip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    found = (
        [m.start() for m in re.finditer(re.escape(start), text)],
        [m.start() for m in re.finditer(re.escape(end), text)],
    )
    if found == ([], []):
        text = f"{text.rstrip()}\n\n## {title}\n\n{body}\n"
    elif len(found[0]) == 1 and len(found[1]) == 1 and found[0][0] < found[1][0]:
        text = text[: found[0][0]] + body + text[found[1][0] + len(end):]
    else:
        raise BenchDocError(f"{doc}: block {name!r} needs exactly one {start} before one {end}")
    atomic_write(doc, lambda fh: fh.write(text), text=True)


def torch_machine() -> dict[str, Any]:
    """What a timing depends on: cores, Python, torch and its thread count (torch imported here, in the bench)."""
    import torch

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def publish(
    report: dict[str, Any], markdown: str, *, stdout: OutputWrapper | TextIO, out: str, doc: str, block: str,
    command: str, title: str,
) -> None:
    """Write the raw report (`--out`), show the tables, and rewrite the doc's block (`--doc`)."""
    if out:
        Path(out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    stdout.write(markdown)
    if doc:
        write_block(Path(doc), block, f"{provenance(command, report['machine'])}\n{markdown}", title=title)
