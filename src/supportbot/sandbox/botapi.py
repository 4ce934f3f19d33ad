"""The ``/bot{token}/{method}`` half of the sandbox: the Bot API methods the bot uses.

They follow the real API closely, including its error codes and descriptions, because
tests against a permissive fake would prove nothing about production.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from supportbot.sandbox.errors import BotApiError, bad_request
from supportbot.sandbox.faults import DEFAULT_DELAY, DEFAULT_RETRY_AFTER, ERROR_DESCRIPTIONS, Fault
from supportbot.sandbox.formatting import MAX_MESSAGE_LENGTH, ParsedText, parse_text, utf16_len
from supportbot.sandbox.forum import ForumMethods, SandboxGroup
from supportbot.sandbox.params import Params, markup_key, read_params, read_reply_markup
from supportbot.sandbox.state import SandboxChat, SandboxState, StoredMessage, now
from supportbot.sandbox.webhook import WebhookPusher, local_http_allowed

__all__ = ["BotApi", "BotApiError"]

MAX_CALLBACK_ANSWER_LENGTH = 200
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024  # getFile refuses bigger files for cloud bots
MAX_POLL_TIMEOUT = 50.0

# Query parameter that marks a request redirected by a "redirect" fault.
_REDIRECT_MARKER = "sandbox_redirect_fault"
_BOT_COMMAND_NAME_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)

_Method = Callable[[Params], Awaitable[Any]]


class BotApi:
    """The ``/bot{token}/{method}`` half of the server."""

    def __init__(self, state: SandboxState, token: str) -> None:
        self.state = state
        self._token = token
        self.webhook = WebhookPusher(state)  # pushes updates while a webhook is set (webhook.py)
        self.methods: dict[str, _Method] = {
            "getMe": self.get_me,
            "logOut": self.always_true,
            "close": self.always_true,
            "deleteWebhook": self.delete_webhook,
            "setWebhook": self.set_webhook,
            "getWebhookInfo": self.get_webhook_info,
            "setMyCommands": self.set_my_commands,
            "getMyCommands": self.get_my_commands,
            "deleteMyCommands": self.delete_my_commands,
            "setMyDescription": self.always_true,
            "setMyShortDescription": self.always_true,
            "setMyName": self.always_true,
            "setChatMenuButton": self.always_true,
            "getUpdates": self.get_updates,
            "sendMessage": self.send_message,
            "editMessageText": self.edit_message_text,
            "editMessageReplyMarkup": self.edit_message_reply_markup,
            "deleteMessage": self.delete_message,
            "answerCallbackQuery": self.answer_callback_query,
            "sendChatAction": self.send_chat_action,
            "getFile": self.get_file,
        }
        self.forum = ForumMethods(state)  # forum supergroups: topics, sending into them (forum.py)
        self.methods.update(self.forum.methods())
        # Telegram matches method names case-insensitively.
        self._by_lower_name = {name.lower(): name for name in self.methods}

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._token.encode())

    # -- HTTP glue --------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.token_matches(request.match_info["token"]):
            return _bot_error(401, "Unauthorized")
        name = self._by_lower_name.get(request.match_info["method"].lower())
        if name is None:
            return _bot_error(404, "Not Found: method not found")
        if self._redirecting(request):
            return _redirect(request)  # the client follows a redirect fault once more
        method = self.methods[name]
        try:
            params = await read_params(request)
            chat_id = self._target_chat(params)
            self.state.requests.add(name, chat_id)
            # Faults strike before the method runs: a refused sendMessage stores nothing.
            fault = self.state.faults.strike(name, chat_id)
            if fault is not None:
                return await self._inject(fault, request, method, params)
            # Over Telegram's send limits (when enforced): refused like Telegram, nothing delivered.
            retry_after = self.state.limits.check(name, chat_id)
            if retry_after is not None:
                return _bot_error(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
            result = await method(params)
        except BotApiError as exc:
            return _bot_error(exc.code, exc.description)
        return web.json_response({"ok": True, "result": result})

    async def download(self, request: web.Request) -> web.StreamResponse:
        if not self.token_matches(request.match_info["token"]):
            return _bot_error(401, "Unauthorized")
        stored = self.state.file_by_path(request.match_info["path"])
        if stored is None:
            return _bot_error(404, "Not Found")
        return web.Response(body=stored.data, content_type=stored.mime_type)

    # -- injected faults --------------------------------------------------------------
    async def _inject(
        self, fault: Fault, request: web.Request, method: _Method, params: Params
    ) -> web.StreamResponse:
        if fault.error == "429":
            retry_after = fault.retry_after or DEFAULT_RETRY_AFTER
            return _bot_error(
                429,
                f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )
        if fault.error in ERROR_DESCRIPTIONS:
            return _bot_error(int(fault.error), ERROR_DESCRIPTIONS[fault.error])
        if fault.error == "redirect":
            return _redirect(request, fault.id)
        if fault.error == "timeout":
            waited = await self.state.hold(fault.delay or DEFAULT_DELAY)
            if waited and fault.then == "answer":
                # Late, but done: the client that gave up never learns that it worked.
                return web.json_response({"ok": True, "result": await method(params)})
        return _drop_connection(request)

    def _redirecting(self, request: web.Request) -> bool:
        marker = request.query.get(_REDIRECT_MARKER, "")
        if not (marker.isascii() and marker.isdigit()):
            return False
        fault = self.state.faults.get(int(marker))
        return fault is not None and fault.error == "redirect"

    def _target_chat(self, params: Params) -> int | None:
        """The chat a request is about, for per-chat faults and counts (None: no chat)."""
        value = params.raw("chat_id")
        if isinstance(value, str) and value.startswith("@"):
            chat = self.state.find_chat(value)
            return chat.id if chat is not None else None
        if isinstance(value, bool):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    # -- lookups ----------------------------------------------------------------------
    def _chat(self, params: Params, *, sending: bool = False) -> SandboxChat:
        chat = self.state.find_chat(params.chat_ref())
        if chat is None:
            raise bad_request("chat not found")
        if sending and chat.blocked:
            raise BotApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _message_id(self, params: Params) -> int:
        message_id = params.integer("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        return message_id

    def _message_to_edit(self, params: Params) -> StoredMessage:
        if params.has("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")  # no inline mode in the sandbox
        chat = self._chat(params)
        message = chat.messages.get(self._message_id(params))
        if message is None or message.deleted:
            raise bad_request("message to edit not found")
        if message.sender != "bot":
            raise bad_request("message can't be edited")
        return message

    # -- simple methods ---------------------------------------------------------------
    async def always_true(self, params: Params) -> bool:
        return True

    async def get_me(self, params: Params) -> dict[str, Any]:
        return {
            **self.state.bot_user,
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def delete_webhook(self, params: Params) -> bool:
        self.state.webhook = {}
        await self.webhook.stop()
        if params.flag("drop_pending_updates"):
            self.state.updates.clear()
        return True

    async def set_webhook(self, params: Params) -> bool:
        url = params.string("url") or ""
        if not url:
            return await self.delete_webhook(params)
        # Telegram wants HTTPS on 443/80/88/8443; plain http is allowed to this machine only.
        if not local_http_allowed(url):
            if not url.startswith("https://"):
                raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
            if _url_port(url) not in (443, 80, 88, 8443):
                raise bad_request("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = params.string("secret_token")
        if secret is not None and not _SECRET_TOKEN_RE.match(secret):
            raise bad_request("secret token contains unallowed characters")
        max_connections = params.integer("max_connections", default=40) or 40
        if not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        allowed = params.obj("allowed_updates")
        if isinstance(allowed, list):  # as with getUpdates: an empty list restores the default set
            self.state.allowed_updates = frozenset(map(str, allowed)) if allowed else None
        self.state.webhook = {"url": url, "allowed_updates": allowed}
        if params.flag("drop_pending_updates"):
            self.state.updates.clear()
        await self.webhook.start(url, secret=secret, max_connections=max_connections)
        return True

    async def get_webhook_info(self, params: Params) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.state.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self.state.updates),
            **self.webhook.info(),
        }
        if self.state.webhook.get("allowed_updates"):
            info["allowed_updates"] = self.state.webhook["allowed_updates"]
        return info

    def _commands_key(self, params: Params) -> str:
        scope = params.obj("scope") or {"type": "default"}
        return f"{json.dumps(scope, sort_keys=True)}|{params.string('language_code') or ''}"

    async def set_my_commands(self, params: Params) -> bool:
        commands = params.obj("commands", what="commands JSON object")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("can't parse commands JSON object")
        for command in commands:
            name = str(command.get("command", "")) if isinstance(command, dict) else ""
            if not _BOT_COMMAND_NAME_RE.match(name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.state.commands[self._commands_key(params)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def get_my_commands(self, params: Params) -> list[dict[str, str]]:
        return self.state.commands.get(self._commands_key(params), [])

    async def delete_my_commands(self, params: Params) -> bool:
        self.state.commands.pop(self._commands_key(params), None)
        return True

    # -- updates ----------------------------------------------------------------------
    async def get_updates(self, params: Params) -> list[dict[str, Any]]:
        if self.state.webhook.get("url"):
            raise BotApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.integer("offset", default=0) or 0
        limit = min(max(params.integer("limit", default=100) or 100, 1), 100)
        timeout = min(max(params.number("timeout", 0.0), 0.0), MAX_POLL_TIMEOUT)
        allowed = params.obj("allowed_updates")
        if isinstance(allowed, list):
            # An empty list restores the default set, as documented.
            self.state.allowed_updates = frozenset(map(str, allowed)) if allowed else None
        return await self.state.get_updates(offset, limit, timeout)

    # -- messages ---------------------------------------------------------------------
    def _parsed_text(self, params: Params) -> tuple[str, ParsedText]:
        text = params.string("text") or ""
        if not text.strip():
            raise bad_request("message text is empty")
        parsed = parse_text(text, params.string("parse_mode"), params.obj("entities"))
        if not parsed.text:
            raise bad_request("message text is empty")
        if utf16_len(parsed.text) > MAX_MESSAGE_LENGTH:
            raise bad_request("message is too long")
        return text, parsed

    def _reply_target(self, params: Params, chat: SandboxChat | SandboxGroup) -> int | None:
        reply = params.obj("reply_parameters")
        if isinstance(reply, dict):
            target = reply.get("message_id")
            allow_missing = bool(reply.get("allow_sending_without_reply"))
        else:
            target = params.integer("reply_to_message_id")
            allow_missing = params.flag("allow_sending_without_reply")
        if target is None:
            return None
        if not isinstance(target, int) or isinstance(target, bool):
            raise bad_request("invalid reply_parameters specified")
        message = chat.messages.get(target)
        if message is None or message.deleted:
            if allow_missing:
                return None
            raise bad_request("message to be replied not found")
        return message.message_id

    async def send_message(self, params: Params) -> dict[str, Any]:
        group = self.forum.group_of(params)
        if group is not None:
            return await self._send_to_group(group, params)
        chat = self._chat(params, sending=True)
        text, parsed = self._parsed_text(params)
        markup = read_reply_markup(params)
        preview = params.obj("link_preview_options")
        if preview is None and params.flag("disable_web_page_preview"):
            preview = {"is_disabled": True}
        message = self.state.add_message(
            chat,
            sender="bot",
            kind="text",
            text=text,
            parse_mode=params.string("parse_mode"),
            parsed=parsed,
            reply_markup=markup,
            reply_to_message_id=self._reply_target(params, chat),
            link_preview_options=preview if isinstance(preview, dict) else None,
            disable_notification=params.flag("disable_notification"),
        )
        await self.state.notify()
        return self.state.message_to_telegram(message)

    async def _send_to_group(self, group: SandboxGroup, params: Params) -> dict[str, Any]:
        text, parsed = self._parsed_text(params)
        markup = read_reply_markup(params)
        message = await self.forum.send_message(group, params, {
            "text": text,
            "parse_mode": params.string("parse_mode"),
            "parsed": parsed,
            "reply_markup": markup,
            "reply_to_message_id": self._reply_target(params, group),
            "disable_notification": params.flag("disable_notification"),
        })
        await self.state.notify()
        return self.state.forum.message_to_telegram(self.state, group, message)

    async def edit_message_text(self, params: Params) -> dict[str, Any]:
        message = self._message_to_edit(params)
        if message.kind != "text":
            raise bad_request("there is no text in the message to edit")
        text, parsed = self._parsed_text(params)
        markup = read_reply_markup(params)
        if markup is not None and "inline_keyboard" not in markup:
            raise bad_request("inline keyboard expected")
        # Like Telegram, an edit without reply_markup removes the inline keyboard.
        same_markup = markup_key(markup) == markup_key(message.inline_markup())
        if parsed == message.parsed and same_markup:
            raise BotApiError(400, _NOT_MODIFIED)
        message.text, message.parsed, message.reply_markup = text, parsed, markup
        message.parse_mode = params.string("parse_mode")
        preview = params.obj("link_preview_options")
        if isinstance(preview, dict):
            message.link_preview_options = preview
        return await self._edited(message)

    async def edit_message_reply_markup(self, params: Params) -> dict[str, Any]:
        message = self._message_to_edit(params)
        markup = read_reply_markup(params)
        if markup is not None and "inline_keyboard" not in markup:
            raise bad_request("inline keyboard expected")
        if markup_key(markup) == markup_key(message.inline_markup()):
            raise BotApiError(400, _NOT_MODIFIED)
        message.reply_markup = markup
        return await self._edited(message)

    async def _edited(self, message: StoredMessage) -> dict[str, Any]:
        message.edit_date = now()
        message.edit_count += 1
        await self.state.notify()
        return self.state.message_to_telegram(message)

    async def delete_message(self, params: Params) -> bool:
        chat = self._chat(params)
        message = chat.messages.get(self._message_id(params))
        if message is None or message.deleted:
            raise bad_request("message to delete not found")
        message.deleted = True
        await self.state.notify()
        return True

    async def answer_callback_query(self, params: Params) -> bool:
        callback_id = params.string("callback_query_id")
        if callback_id is None:
            raise bad_request("query_id is empty")
        record = self.state.live_callback(callback_id)
        if record is None:
            raise BotApiError(400, _QUERY_TOO_OLD)
        text = params.string("text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise bad_request("MESSAGE_TOO_LONG")
        record.answered = True
        record.text = text
        record.show_alert = params.flag("show_alert")
        record.url = params.string("url")
        await self.state.notify()
        return True

    async def send_chat_action(self, params: Params) -> bool:
        chat = self._chat(params, sending=True)
        action = params.string("action")
        if action is None:
            raise bad_request("action is empty")
        if action not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        chat.actions.append({"action": action, "date": now()})
        return True

    async def get_file(self, params: Params) -> dict[str, Any]:
        file_id = params.string("file_id")
        if file_id is None:
            raise bad_request("file_id is empty")
        stored = self.state.files.get(file_id)
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.size > MAX_DOWNLOAD_SIZE:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }


def _bot_error(
    code: int, description: str, parameters: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


def _url_port(url: str) -> int | None:
    try:
        parts = urlsplit(url)
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None


def _redirect(request: web.Request, fault_id: int | None = None) -> web.Response:
    # Back to the same URL, marked so that the followed request is redirected again
    # (without counting as a new hit) until the client gives up.
    url = request.url if fault_id is None else request.url.update_query(
        {_REDIRECT_MARKER: str(fault_id)}
    )
    return web.Response(status=307, headers={"Location": str(url)})


def _drop_connection(request: web.Request) -> web.Response:
    """Close the connection unanswered; the response returned is never written."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499, text="connection dropped by an injected fault")
