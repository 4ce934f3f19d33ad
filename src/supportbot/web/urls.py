from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from supportbot.web import views_ops

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("sandbox/", include("supportbot.sandbox.urls")),
    path("healthz", views_ops.healthz, name="healthz"),
    path("metrics", views_ops.prometheus_metrics, name="metrics"),
]
