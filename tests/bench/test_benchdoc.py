"""docs/benchmarks.md's measured blocks: each benchmark command rewrites its own block and nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings

from bench.benchdoc import BenchDocError, provenance, write_block
from bench.label_efficiency import markdown

DOC = """# Benchmarks

Prose before, written by people.

<!-- bench:model -->
| old | table |
<!-- /bench:model -->

Prose after: what the numbers mean.
"""


def test_it_rewrites_only_its_own_block_and_keeps_the_prose(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC, encoding="utf-8")
    write_block(doc, "model", "| new | table |\n|---|---|\n| 1 | 2 |", title="unused")
    text = doc.read_text(encoding="utf-8")
    assert "| old | table |" not in text
    assert "<!-- bench:model -->\n| new | table |\n|---|---|\n| 1 | 2 |\n<!-- /bench:model -->" in text
    assert text.startswith("# Benchmarks\n\nProse before, written by people.\n\n")
    assert text.endswith("\n\nProse after: what the numbers mean.\n")
    assert "## unused" not in text


def test_it_appends_a_missing_block_under_its_heading_once(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC, encoding="utf-8")
    write_block(doc, "score", "first run", title="Serving: latest `make bench`")
    write_block(doc, "score", "second run", title="Serving: latest `make bench`")
    text = doc.read_text(encoding="utf-8")
    assert text.count("## Serving: latest `make bench`") == 1
    assert "second run" in text and "first run" not in text
    assert "| old | table |" in text  # the other block is untouched

    fresh = tmp_path / "new.md"
    write_block(fresh, "simulate", "numbers", title="Label efficiency")
    assert fresh.read_text(encoding="utf-8") == (
        "# Benchmarks\n\n## Label efficiency\n\n<!-- bench:simulate -->\nnumbers\n<!-- /bench:simulate -->\n"
    )


@pytest.mark.parametrize("broken", [
    "<!-- /bench:model -->\nx\n<!-- bench:model -->\n",  # end before start
    "<!-- bench:model -->\nno end\n",
    "<!-- bench:model -->\na\n<!-- /bench:model -->\n<!-- bench:model -->\nb\n<!-- /bench:model -->\n",
])
def test_it_refuses_a_broken_block_and_leaves_the_file_alone(tmp_path, broken):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(broken, encoding="utf-8")
    with pytest.raises(BenchDocError, match="model"):
        write_block(doc, "model", "new", title="t")
    assert doc.read_text(encoding="utf-8") == broken


def test_it_says_which_command_wrote_the_block_and_on_what():
    line = provenance("manage.py bench_model", {"cpus": 2, "python": "3.11.7", "torch": "2.14.1", "threads": 2})
    assert line.startswith("*Written by `manage.py bench_model` on ")
    assert line.endswith("2 cores, Python 3.11.7, torch 2.14.1, 2 torch threads.*")


def test_the_simulate_table_leaves_out_label_all_when_no_run_labelled_everything():
    point = {"labels": 80, "mean": 0.8, "min": 0.75, "max": 0.85}
    summary = {"items": 2000, "holdout": 400, "reference": {"accuracy": 0.9},
               "strategies": {"active": {"curve": [point]}, "random": {"curve": [{**point, "mean": 0.7}]}}}
    report = {"budget": 100, "datasets": {"tiny": summary}}
    text = markdown(report)
    assert "| tiny | 2,000 (400) | 0.800 (0.750–0.850) | 0.700 (0.750–0.850) | — | — | 0.900 | 0.889 |" in text
    assert "single labels" not in text

    summary["label_all"] = {"single_labels": 1600, "batch_items_seen": 0, "batch_rejections": 0,
                            "proposal_precision": None, "final_label_accuracy": 1.0, "seconds": 4000.0,
                            "seconds_per_item": 2.5}
    text = markdown(report)
    # Results from before corrections in the grid have no corrections, misses, auto-labels or first batch.
    assert "| tiny | 1,600 | 0 | 0 | 0 | 0 | 0 | — | 100.0% | — | 67 min | 2.50 s |" in text
    summary["label_all"] |= {"corrections": 12, "missed": 1, "first_batch_at": 25}
    assert "| tiny | 1,600 | 0 | 0 | 12 | 1 | 0 | — | 100.0% | 25 | 67 min | 2.50 s |" in markdown(report)
    # The whole curve from 30 labels: one step here (80), where active is ahead.
    assert "| tiny | 0.800 | 0.700 | 1 of 1 steps |" in text


@pytest.mark.parametrize("name", ["model", "score", "simulate"])
def test_the_projects_own_benchmarks_doc_has_each_block_once(tmp_path, name):
    # `make bench` ends by rewriting these blocks; a marker quoted in the prose would make it fail there.
    doc = tmp_path / "benchmarks.md"
    shutil.copy(Path(settings.BASE_DIR) / "docs" / "benchmarks.md", doc)
    before = doc.read_text(encoding="utf-8")
    write_block(doc, name, "measured", title="unused")
    after = doc.read_text(encoding="utf-8")
    assert "## unused" not in after and f"<!-- bench:{name} -->\nmeasured\n<!-- /bench:{name} -->" in after
    assert after.split(f"<!-- bench:{name} -->")[0] == before.split(f"<!-- bench:{name} -->")[0]
