"""The LLM chain as the settings describe it."""

from __future__ import annotations

import logging

import pytest

from supportbot.assembly import Process
from supportbot.config import ConfigError, Settings, load_settings
from supportbot.llm.api import ApiAnswerer
from supportbot.llm.local import LocalAnswerer


def _settings(tmp_path, **values) -> Settings:
    return Settings(_env_file=None, supportbot_data_dir=tmp_path, **values)


def test_defaults_local_model_on_api_off_without_a_key(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("LOCAL_LLM_ENABLED", raising=False)
    monkeypatch.delenv("API_LLM_ENABLED", raising=False)
    cfg = Settings(_env_file=None, supportbot_data_dir=tmp_path)
    assert cfg.local_llm_enabled and cfg.local_llm_engine == "llama.cpp" and cfg.local_llm_model is None
    with caplog.at_level(logging.WARNING, logger="supportbot.llm.setup"):
        fallback = Process(cfg).llm_fallback()
    assert [type(s.answerer) for s in fallback.chain.steps] == [LocalAnswerer]
    assert fallback.chain.steps[0].timeout == cfg.local_llm_timeout
    assert fallback.local is fallback.chain.steps[0].answerer
    assert fallback.local.model_name == "qwen2.5-coder-1.5b-instruct-q4_k_m"
    assert [r.message for r in caplog.records] == ["API LLM step off: OPENAI_API_KEY is not set"]
    assert fallback.chain.off[0].summary() == "api_llm: off (OPENAI_API_KEY is not set)"
    # Nothing was loaded or assembled yet: that happens in the worker, on first use.
    assert fallback.local.engine is None and not (tmp_path / "models").exists()


def test_the_same_local_model_is_shared_by_every_pipeline_of_a_process(tmp_path):
    cfg = _settings(tmp_path, local_llm_enabled=True)
    parts = Process(cfg)
    assert parts.llm_fallback().local is parts.llm_fallback().local


def test_a_key_switches_the_api_step_on_after_the_local_one(tmp_path):
    cfg = _settings(tmp_path, local_llm_enabled=True, api_llm_enabled=True, openai_api_key="sk-test",
                    openai_base_url="http://127.0.0.1:9/v1/", openai_model="my-model", api_llm_timeout=7)
    steps = Process(cfg).llm_fallback().chain.steps
    assert [s.answerer.source for s in steps] == ["local_llm", "api_llm"]
    api = steps[1].answerer
    assert isinstance(api, ApiAnswerer) and api.model_name == "my-model" and steps[1].timeout == 7
    assert api.base_url == "http://127.0.0.1:9/v1"
    assert "sk-test" not in repr(cfg)


def test_each_step_has_its_switch(tmp_path):
    only_api = Process(_settings(tmp_path, local_llm_enabled=False, api_llm_enabled=True,
                                 openai_api_key="sk-test")).llm_fallback()
    assert [s.answerer.source for s in only_api.chain.steps] == ["api_llm"]
    assert only_api.chain.off[0].summary() == "local_llm: off (LOCAL_LLM_ENABLED=false)"
    assert Process(_settings(tmp_path, local_llm_enabled=False, api_llm_enabled=False,
                             openai_api_key="sk-test")).llm_fallback() is None


def test_bad_llm_settings_name_the_variable(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:8080")
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        load_settings()
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("LOCAL_LLM_ENGINE", "ollama")
    with pytest.raises(ConfigError, match="LOCAL_LLM_ENGINE"):
        load_settings()
    monkeypatch.delenv("LOCAL_LLM_ENGINE")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    monkeypatch.setenv("LLM_MAX_TOKENS", "0")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "LLM_MAX_TOKENS" in str(error.value) and "sk-secret-value" not in str(error.value)
