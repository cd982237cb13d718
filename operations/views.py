"""The operator's dashboard pages (data for the first paint; scripts keep them live)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.http import require_safe

from lifecycle.models import Position
from operations.dashboard import dashboard_state, position_page_state

LOGIN_URL = "login"
API_PREFIX = "/api/"


@require_safe
@login_required(login_url=LOGIN_URL)
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/index.html",
                  {"state": dashboard_state(request.user)})


@require_safe
@login_required(login_url=LOGIN_URL)
def position_detail(request: HttpRequest, position_id: int) -> HttpResponse:
    try:
        state = position_page_state(request.user, position_id)
    except Position.DoesNotExist:
        raise Http404(f"no position {position_id}")
    return render(request, "dashboard/position.html",
                  {"state": state, "position": state["position"]})


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """JSON for API paths (a client parses every answer), Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Server error.", "code": "server_error"}, status=500)
    return defaults.server_error(request)
