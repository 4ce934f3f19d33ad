"""The staff-only sandbox chat page: a person plays a customer against the real bot.

The page talks to the sandbox Bot API server's control API through this proxy,
so it needs only the admin login and works wherever the admin is served.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_protect

from supportbot.config import get_settings

_ALLOWED_PREFIXES = ("chats/", "callbacks/", "health")
_MAX_BODY = 21 * 1024 * 1024


def _sandbox_base() -> str:
    cfg = get_settings()
    return f"http://{cfg.sandbox_host}:{cfg.sandbox_port}/sandbox/api/"


@staff_member_required
def chat_page(request: HttpRequest) -> HttpResponse:
    return render(request, "sandbox/chat.html", {
        "user_id": 900_000_000 + request.user.pk,
        "first_name": request.user.first_name or request.user.username,
        "sandbox_mode": get_settings().sandbox_mode,
    })


@staff_member_required
@csrf_protect
def proxy(request: HttpRequest, rest: str) -> HttpResponse:
    if not rest.startswith(_ALLOWED_PREFIXES) or ".." in rest:
        return JsonResponse({"error": "unknown sandbox route"}, status=404)
    if request.method not in ("GET", "POST"):
        return JsonResponse({"error": "method not allowed"}, status=405)
    body = request.body if request.method == "POST" else None
    if body is not None and len(body) > _MAX_BODY:
        return JsonResponse({"error": "upload too large"}, status=413)
    url = _sandbox_base() + rest
    if request.META.get("QUERY_STRING"):
        url += "?" + request.META["QUERY_STRING"]
    headers = {"Content-Type": request.content_type or "application/json"}
    if request.META.get("CONTENT_TYPE"):
        headers["Content-Type"] = request.META["CONTENT_TYPE"]
    req = urllib.request.Request(url, data=body, method=request.method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - local sandbox only
            return HttpResponse(resp.read(), status=resp.status, content_type="application/json")
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.read(), status=exc.code, content_type="application/json")
    except (urllib.error.URLError, OSError):
        return JsonResponse({"error": "The sandbox is not running. Start it with `make run` "
                                      "(without TELEGRAM_BOT_TOKEN) or `supportbot sandbox`."}, status=503)
