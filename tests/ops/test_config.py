import pytest

from supportbot.config import ConfigError, Settings, load_settings


def _env(monkeypatch, **values):
    for key, value in values.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEB_PORT", "eighty"),
        ("WEB_PORT", "70000"),
        ("DEBUG", "maybe"),
        ("DEFAULT_LANGUAGE", "de"),
        ("TELEGRAM_API_URL", "api.telegram.org"),
        ("TELEGRAM_BOT_TOKEN", "not-a-token"),
        ("DATABASE_URL", "oracle://x"),
        ("EMBEDDING_BACKEND", "word2vec"),
        ("EMBEDDING_PRECISION", "fp16"),
        ("FAQ_MATCH_THRESHOLD", "2"),
        ("FAQ_CLASSIFIER_MAX_ENTRIES", "-1"),
        ("WHISPER_SHORT_WINDOWS", "perhaps"),
        ("DELIVERY_RETRY_SECONDS", "soon"),
        ("DELIVERY_RETRY_SECONDS", "1,-5"),
        ("DELIVERY_RETRY_SECONDS", ","),
    ],
)
def test_bad_value_names_the_variable(monkeypatch, variable, value):
    _env(monkeypatch, **{variable: value})
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert variable in str(info.value)


@pytest.mark.parametrize(("variable", "value"), [
    ("TELEGRAM_BOT_TOKEN", "secret-but-malformed"),
    ("SEND_LIMITS_REDIS_URL", "http://user:secret-but-malformed@127.0.0.1:6379/0"),
])
def test_secrets_never_appear_in_errors(monkeypatch, variable, value):
    _env(monkeypatch, **{variable: value})
    with pytest.raises(ConfigError, match=variable) as info:
        load_settings()
    assert "secret-but-malformed" not in str(info.value)


def test_defaults_and_sandbox_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    cfg = Settings(supportbot_data_dir=tmp_path / "d")
    assert cfg.sandbox_mode and cfg.debug is False
    assert cfg.telegram_api_url == "https://api.telegram.org"
    assert cfg.resolved_database_url().startswith("sqlite:///") and str(tmp_path) in cfg.resolved_database_url()
    key = cfg.secret_key()
    assert len(key) > 40 and cfg.secret_key() == key  # generated once, then reused
    assert (tmp_path / "d" / "secret_key").stat().st_mode & 0o077 == 0


def test_dotenv_file_is_read(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WEB_PORT", raising=False)
    (tmp_path / ".env").write_text("WEB_PORT=9123\nDEFAULT_LANGUAGE=uk\n")
    cfg = load_settings()
    assert cfg.web_port == 9123 and cfg.default_language == "uk"


def test_models_are_kept_in_one_shared_cache_not_in_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SUPPORTBOT_MODEL_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = Settings(_env_file=None, supportbot_data_dir=tmp_path / "data")
    assert cfg.model_dir == (tmp_path / "cache" / "supportbot" / "models").resolve()
    other = Settings(_env_file=None, supportbot_data_dir=tmp_path / "another-data-dir")
    assert other.model_dir == cfg.model_dir  # a new data dir reuses the joined models
    chosen = Settings(_env_file=None, supportbot_model_dir=str(tmp_path / "models"))
    assert chosen.model_dir == (tmp_path / "models").resolve()
    assert Settings(_env_file=None, supportbot_model_dir="  ").model_dir == cfg.model_dir  # blank: the default


def test_settings_come_in_typed_groups(monkeypatch):
    _env(monkeypatch, DELIVERY_RETRY_SECONDS="0.5, 2,10", OUTBOX_LEASE_SECONDS="120", SPEECH_LANGUAGES="uk,en",
         FAQ_MATCH_THRESHOLD="0.8")
    cfg = load_settings()
    assert cfg.outbox.retry_seconds == (0.5, 2.0, 10.0) and cfg.outbox.lease.total_seconds() == 120
    assert cfg.speech.languages == ("uk", "en") and cfg.faq.match_threshold == 0.8
    assert cfg.telegram.sandbox_mode and cfg.web.allowed_hosts == ["localhost", "127.0.0.1"]
