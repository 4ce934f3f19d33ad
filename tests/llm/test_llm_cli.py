"""``supportbot ask --no-faq``: the LLM steps on one question, with their context and timings."""

from __future__ import annotations

import json

import pytest

from supportbot.cli import main
from supportbot.config import get_settings

from ..llm_helpers import smollm2_path

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def tiny_local_model(monkeypatch):
    monkeypatch.setenv("LOCAL_LLM_ENABLED", "true")
    monkeypatch.setenv("LOCAL_LLM_MODEL", str(smollm2_path()))
    monkeypatch.setenv("LLM_MAX_TOKENS", "32")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_ask_no_faq_goes_to_the_llm_and_shows_step_context_and_timings(sample_faq, tiny_local_model, capsys):
    assert main(["ask", "--no-faq", "--json", "How much does shipping cost?"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["source"] != "faq" and result["faq_key"] is None  # an FAQ question, not an FAQ answer
    assert [s["source"] for s in result["steps"]] == ["api_llm", "local_llm"]
    assert result["steps"][0]["outcome"] == "off"
    local = result["steps"][1]
    assert local["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and local["total_ms"] > 0
    assert "delivery-cost-en" in [c["faq_key"] for c in result["context"]]
    if result["source"] == "local_llm":
        assert result["first_token_ms"] is not None and result["completion_tokens"] > 0

    assert main(["ask", "--no-faq", "How much does shipping cost?"]) == 0
    out = capsys.readouterr().out
    assert "llm:     api_llm: off" in out and "step local_llm" in out and "context   delivery-cost-en" in out


def test_ask_says_when_no_llm_step_is_on(sample_faq, capsys):
    assert main(["ask", "--no-faq", "--json", "How much does shipping cost?"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["source"] == "handover" and result["reason"] == "FAQ skipped" and result["steps"] == []
