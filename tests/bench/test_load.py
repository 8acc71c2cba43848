"""`manage.py bench_load` end to end on a small project: real gunicorn, real HTTP, its own database."""

from __future__ import annotations

import json

from django.core.management import call_command


def test_it_measures_annotators_against_gunicorn_and_checks_nothing_was_lost(tmp_path):
    out, doc = tmp_path / "load.json", tmp_path / "benchmarks.md"
    call_command("bench_load", "--backend", "sqlite", "--items", "300", "--annotators", "4", "--seconds", "4",
                 "--think", "0", "--workers", "1", "--warmup", "1", "--out", str(out), "--doc", str(doc))
    report = json.loads(out.read_text())
    run = report["runs"]["sqlite"]
    assert run["items"] == 300
    # Acknowledged counts the warm-up too (the lost check covers every judgement); the timings do not.
    assert run["acknowledged"] > run["judgement"]["n"] > 0
    assert run["next"]["n"] >= run["judgement"]["n"]
    # gunicorn's own timings, read from its access log (whole seconds: about the same requests).
    assert run["server_next"]["n"] > 0 and run["server_judgement"]["n"] > 0
    assert 0 < run["server_next"]["p50_ms"] <= run["next"]["p95_ms"]
    assert run["lost"] == 0 and run["doubly_leased"] == 0 and run["items_with_two_current"] == 0
    assert run["next"]["p50_ms"] <= run["next"]["p95_ms"] <= run["next"]["max_ms"]
    text = doc.read_text()
    assert "<!-- bench:load -->" in text and "| sqlite |" in text
