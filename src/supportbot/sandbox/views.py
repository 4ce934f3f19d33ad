"""The staff-only sandbox chat page: a person plays a customer against the real bot.

The page talks to the sandbox Bot API server's control API through this proxy,
so it needs only the admin login and works wherever the admin is served.
"""

from __future__ import annotations

import functools
import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.template import engines
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect

# Only the control-API routes the page uses; anything else (the Bot API with its
# token, "..", odd characters) never reaches the sandbox.
_ALLOWED_ROUTE = re.compile(
    r"health|chats/\d{1,19}/(?:messages|callback)|callbacks/[\w-]{1,64}"
    r"|groups/-\d{1,19}/(?:messages|topics)"  # the operators' group page
)
_MAX_BODY = 21 * 1024 * 1024  # Telegram's 20 MB download limit plus multipart overhead
_TIMEOUT_S = 10
_PAGE = Path(__file__).resolve().parent / "templates" / "sandbox" / "chat.html"
_GROUP_PAGE = _PAGE.with_name("group.html")
#: Telegram ids the group page plays an unlinked staff user as (the chat page's customers: 900_000_000 + pk).
_UNLINKED_OPERATOR_BASE = 910_000_000
_NOT_RUNNING = (
    "The sandbox is not running. Start it with `make run` (without TELEGRAM_BOT_TOKEN) "
    "or `supportbot sandbox`."
)


def _sandbox_base() -> str:
    """The control API's base URL (tests point it at their own server)."""
    cfg = settings.SUPPORTBOT
    return f"http://{cfg.sandbox_host}:{cfg.sandbox_port}/sandbox/api/"


@staff_member_required
def chat_page(request: HttpRequest) -> HttpResponse:
    cfg = settings.SUPPORTBOT
    user = request.user
    assert user.is_authenticated and user.pk is not None  # staff_member_required
    context = {
        **admin.site.each_context(request),
        "title": "Sandbox chat",
        "sandbox_mode": cfg.sandbox_mode,
        "page_config": {  # read by the page's script through json_script
            "apiBase": reverse("sandbox:chat") + "api/",
            "userId": 900_000_000 + user.pk,
            "firstName": user.first_name or user.get_username(),
            "language": cfg.default_language,
            "csrfCookieName": settings.CSRF_COOKIE_NAME,
            "csrfToken": get_token(request),
        },
    }
    # The sandbox is a plain package, not an installed app, so the app-directories
    # loader cannot see its template; the project's engine compiles it from the file
    # and can still resolve {% extends "admin/base_site.html" %}.
    template = engines["django"].from_string(_PAGE.read_text(encoding="utf-8"))
    return HttpResponse(template.render(context, request))


@staff_member_required
def group_page(request: HttpRequest) -> HttpResponse:
    """The operators' forum group (``OPERATOR_CHAT_ID``): play an operator in customers' topics, as
    the Telegram user linked to this staff account (admin: Operator accounts), if any."""
    from supportbot.support.models import OperatorAccount  # the admin's side of the group desk

    cfg = settings.SUPPORTBOT
    user = request.user
    assert user.is_authenticated and user.pk is not None  # staff_member_required
    linked = OperatorAccount.objects.filter(user_id=user.pk).values_list("telegram_user_id", flat=True).first()
    context = {
        **admin.site.each_context(request),
        "title": "Sandbox operators' group",
        "group_id": cfg.desk.operator_chat_id,
        "linked": linked is not None,
        "page_config": {
            "apiBase": reverse("sandbox:chat") + "api/",
            "groupId": cfg.desk.operator_chat_id,
            "userId": linked if linked is not None else _UNLINKED_OPERATOR_BASE + user.pk,
            "firstName": user.first_name or user.get_username(),
            "csrfCookieName": settings.CSRF_COOKIE_NAME,
            "csrfToken": get_token(request),
        },
    }
    template = engines["django"].from_string(_GROUP_PAGE.read_text(encoding="utf-8"))
    return HttpResponse(template.render(context, request))


def _staff_api(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Like staff_member_required, but answers JSON 403: the caller is a script."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not (request.user.is_active and request.user.is_staff):
            return JsonResponse(
                {"error": "Staff login required: your admin session may have ended."}, status=403)
        return view(request, *args, **kwargs)

    return wrapped


@csrf_exempt  # checked below, after the raw body is read
@_staff_api
def proxy(request: HttpRequest, rest: str) -> HttpResponse:
    if not _ALLOWED_ROUTE.fullmatch(rest):
        return JsonResponse({"error": "unknown sandbox route"}, status=404)
    if request.method not in ("GET", "POST"):
        return JsonResponse({"error": "method not allowed"}, status=405)
    body = None
    if request.method == "POST":
        # The CSRF check looks for a token in request.POST, and parsing a multipart
        # body consumes the stream; reading the raw bytes first keeps uploads intact
        # (the check then finds the X-CSRFToken header).
        body = request.read(_MAX_BODY + 1)
        if len(body) > _MAX_BODY:
            return JsonResponse({"error": "upload too large (20 MB at most)"}, status=413)
    return _forward(request, rest, body)


@csrf_protect
def _forward(request: HttpRequest, rest: str, body: bytes | None) -> HttpResponse:
    url = _sandbox_base() + rest
    if request.META.get("QUERY_STRING"):
        url += "?" + request.META["QUERY_STRING"]
    headers = {}
    if body is not None:
        # The full header, so a multipart boundary survives.
        headers["Content-Type"] = request.META.get("CONTENT_TYPE") or "application/json"
    upstream = urllib.request.Request(url, data=body, method=request.method, headers=headers)
    try:
        # S310: the host is the configured sandbox and `rest` was allow-listed above.
        with urllib.request.urlopen(upstream, timeout=_TIMEOUT_S) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:  # the sandbox's own JSON errors pass through
        status, payload = exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return JsonResponse({"error": _NOT_RUNNING}, status=503)
    except http.client.HTTPException:
        return JsonResponse({"error": "The sandbox gave a malformed answer."}, status=502)
    response = HttpResponse(payload, status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response
