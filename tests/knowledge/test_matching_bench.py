"""bench/faq_match.py: the metrics, and one run on a file it has never seen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from faq_match import metrics  # noqa: E402


def test_metrics_follow_the_issue_definitions():
    rows = [("a", "a"), ("a", None), ("b", "a"), (None, None), (None, "b")]
    m = metrics(rows)
    assert m["in_scope_accuracy"] == pytest.approx(1 / 3)  # a right, a handed over, b wrong
    assert m["oos_rejection"] == pytest.approx(1 / 2)
    assert m["balanced_accuracy"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert m["wrong_answer_rate"] == pytest.approx(2 / 5)  # b answered as a, uncovered answered as b
    assert (m["covered"], m["uncovered"]) == (3, 2)


@pytest.mark.slow
def test_bench_runs_any_file_of_the_shape_and_writes_predictions(tmp_path):
    faq = [
        {"faq_id": "card.block", "question": "How do I block my card?", "answer": "A1",
         "paraphrases": ["My card was stolen, block it"]},
        {"faq_id": "delivery time", "question": "How long does delivery take?", "answer": "A2",
         "paraphrases": ["When will my parcel arrive?"]},
    ]
    queries = [
        {"query_id": "q1", "text": "someone stole my card, please block it", "faq_id": "card.block"},
        {"query_id": "q2", "text": "Who won the world cup in 1998?", "faq_id": None, "oos_type": "oos"},
    ]
    bench = tmp_path / "never_seen_bench.json"
    bench.write_text(json.dumps({"faq": faq, "queries": queries}), encoding="utf-8")
    out = tmp_path / "predictions.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in {"SUPPORTBOT_DATA_DIR", "DATABASE_URL"}}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faq_match.py"), str(bench), "--split", "queries",
         "--predictions", str(out)], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = Path(done.stdout.split("results: ")[-1].strip())
    try:
        assert "balanced acc" in done.stdout and "p99 ms" in done.stdout
        lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert [line["query_id"] for line in lines] == ["q1", "q2"]
        # Predictions carry the file's own ids (not the slugged entry keys); null = handed over.
        assert lines[0]["faq_id"] == "card.block" and lines[1]["faq_id"] is None
        assert json.loads(results.read_text())["balanced_accuracy"] == 1.0
    finally:
        results.unlink(missing_ok=True)
