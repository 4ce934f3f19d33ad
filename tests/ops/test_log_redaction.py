"""The bot token never reaches a log: every record of every logger is redacted as it is made
(``supportbot.logs``), the real bot's polling errors included."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from aiogram import Dispatcher
from aiogram.utils.backoff import BackoffConfig
from aiohttp import web

from supportbot.bot.runner import build_bot
from supportbot.config import load_settings
from supportbot.logs import StderrHandler, configure_logging, settings_secrets

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET = TOKEN.split(":")[1]
URL = f"http://127.0.0.1:8081/bot{TOKEN}/getUpdates"


def assert_clean(text: str) -> None:
    assert TOKEN not in text
    assert SECRET not in text


def test_arguments_are_redacted_and_keep_their_shape(capsys, caplog):
    configure_logging(secrets=[TOKEN])
    logging.getLogger("supportbot.test").warning("GET %s failed (%d)", URL, 502)
    err = capsys.readouterr().err
    assert "GET http://127.0.0.1:8081/bot123456789:***/getUpdates failed (502)" in err
    assert_clean(err)
    record = caplog.records[-1]
    assert record.args == ("http://127.0.0.1:8081/bot123456789:***/getUpdates", 502)  # formatters may read args


def test_a_traceback_is_redacted_chained_cause_included(capsys):
    configure_logging(secrets=[TOKEN])
    try:
        try:
            raise ConnectionError(f"Cannot connect to host for {URL}")
        except ConnectionError as exc:
            raise RuntimeError(f"request to {URL} failed") from exc
    except RuntimeError:
        logging.getLogger("aiogram.dispatcher").exception("Failed to fetch updates")
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConnectionError: Cannot connect" in err
    assert "RuntimeError: request to http://127.0.0.1:8081/bot123456789:***/getUpdates failed" in err
    assert_clean(err)


def test_stack_text_is_redacted(capsys):
    configure_logging(secrets=[TOKEN])
    code = compile("logging.getLogger('aiohttp.client').warning('where', stack_info=True)",
                   f"/srv/bot{TOKEN}/poll.py", "exec")
    exec(code, {"logging": logging})
    err = capsys.readouterr().err
    assert "Stack (most recent call last)" in err and "/srv/bot123456789:***/poll.py" in err
    assert_clean(err)


def test_a_third_party_logger_with_its_own_handler_is_redacted(capsys):
    """uvicorn puts its own handlers on its loggers (not propagating to the root's): the record
    factory covers them, set up before or after."""
    import uvicorn

    own = io.StringIO()
    aiohttp_log = logging.getLogger("aiohttp.client")
    handler = logging.StreamHandler(own)
    aiohttp_log.addHandler(handler)
    aiohttp_log.propagate = False
    try:
        configure_logging(secrets=[TOKEN])
        uvicorn.Config("supportbot.web.asgi:application", log_level="info")  # uvicorn's dictConfig
        logging.getLogger("uvicorn.error").error("upstream %s failed", URL)
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET",
                                                 f"/bot{TOKEN}/getMe", "1.1", 200)
        aiohttp_log.error("Unclosed connection to %s", URL)
    finally:
        aiohttp_log.removeHandler(handler)
        aiohttp_log.propagate = True
        for name in ("uvicorn", "uvicorn.access"):
            for h in logging.getLogger(name).handlers[:]:
                logging.getLogger(name).removeHandler(h)
    out, err = capsys.readouterr()
    assert "upstream http://127.0.0.1:8081/bot123456789:***/getUpdates failed" in err
    assert '"GET /bot123456789:***/getMe HTTP/1.1" 200' in out  # uvicorn's access formatter, on stdout
    assert "Unclosed connection to http://127.0.0.1:8081/bot123456789:***/getUpdates" in own.getvalue()
    assert "Logging error" not in err
    for text in (out, err, own.getvalue()):
        assert_clean(text)


async def test_asyncio_reports_are_redacted(capsys):
    configure_logging(secrets=[TOKEN])
    try:
        raise OSError(f"Cannot write to {URL}")
    except OSError as exc:
        asyncio.get_running_loop().call_exception_handler({"message": f"Task for {URL} failed", "exception": exc})
    err = capsys.readouterr().err
    assert "ERROR asyncio: Task for http://127.0.0.1:8081/bot123456789:***/getUpdates failed" in err
    assert "OSError: Cannot write to" in err
    assert_clean(err)


def test_bad_format_arguments_and_extra_fields(capsys, caplog):
    configure_logging(secrets=[TOKEN])
    log = logging.getLogger("supportbot.test")
    log.warning("got %d", f"text with {SECRET}")  # a bug in a log call must not print the secret
    log.warning("request", extra={"url": URL})
    err = capsys.readouterr().err
    assert "got %d ('text with ***',)" in err and "Logging error" not in err
    assert caplog.records[-1].url == "http://127.0.0.1:8081/bot123456789:***/getUpdates"
    assert_clean(err)


def test_the_settings_secrets_and_shaped_ones(capsys, monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    monkeypatch.setenv("DATABASE_URL", "postgres://supportbot:pa55-w0rd!@db.local/supportbot")
    configure_logging(secrets=settings_secrets(load_settings()))
    log = logging.getLogger("openai")
    log.warning("key sk-test-0123456789abcdef rejected")
    log.warning("connecting as supportbot:pa55-w0rd!")
    log.warning("bare token %s, half %s", TOKEN, SECRET)
    log.warning("another bot: https://api.telegram.org/bot42:some-other-secret/getMe")
    err = capsys.readouterr().err
    assert "key *** rejected" in err and "connecting as supportbot:***" in err
    assert "bare token 123456789:***, half ***" in err
    assert "/bot42:***/getMe" in err
    assert "sk-test" not in err and "pa55-w0rd" not in err and "some-other-secret" not in err
    assert_clean(err)


def test_without_a_token_sandbox_mode_logging_works(capsys, monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "local")  # README: a keyless local server; too short to redact
    configure_logging(secrets=settings_secrets(load_settings()))
    configure_logging(secrets=[None, "", "  "])  # again, with nothing: harmless
    logging.getLogger("supportbot.test").warning("the local LLM answered from localhost")
    err = capsys.readouterr().err
    assert "the local LLM answered from localhost" in err
    assert sum(isinstance(h, StderrHandler) for h in logging.getLogger().handlers) == 1


def test_verbose_adds_supportbots_debug_lines_only(capsys):
    configure_logging(verbose=True)
    logging.getLogger("supportbot.test").debug("ours")
    logging.getLogger("aiohttp.client").debug("theirs")
    err = capsys.readouterr().err
    assert "ours" in err and "theirs" not in err


@pytest.fixture
async def redirect_loop():
    """A Bot API that knows the bot (getMe) but answers getUpdates with a 307 to itself, forever:
    aiohttp gives up with TooManyRedirects naming the URL, token and all, on every poll."""
    async def bot_api(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/getMe"):
            return web.json_response({"ok": True, "result": {"id": 123456789, "is_bot": True,
                                                             "first_name": "Test", "username": "test_bot"}})
        raise web.HTTPTemporaryRedirect(request.path)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bot_api)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_the_polling_bots_network_errors_are_logged_without_the_token(redirect_loop, capsys, caplog):
    configure_logging(secrets=[TOKEN])
    bot = build_bot(TOKEN, redirect_loop)
    dp = Dispatcher()
    polling = asyncio.create_task(dp.start_polling(
        bot, polling_timeout=1, handle_signals=False,
        backoff_config=BackoffConfig(min_delay=0.05, max_delay=0.2, factor=1.5, jitter=0.01)))
    err = ""
    try:
        for _ in range(200):
            err += capsys.readouterr().err
            if err.count("Failed to fetch updates") >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 10)

    failures = [r for r in caplog.records if r.name == "aiogram.dispatcher" and r.levelno == logging.ERROR]
    assert failures, err
    assert "TooManyRedirects" in failures[0].getMessage()
    assert f"{redirect_loop}/bot123456789:***/getUpdates" in failures[0].getMessage()
    assert "ERROR aiogram.dispatcher: Failed to fetch updates - TelegramNetworkError" in err
    assert "/bot123456789:***/getUpdates" in err
    assert_clean(err)
    assert_clean(caplog.text)
