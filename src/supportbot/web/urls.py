from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from supportbot.web import admin_analytics, views_ops

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # Before admin/: the admin's own URLs would otherwise take it (its catch-all).
    path("admin/analytics/", admin.site.admin_view(admin_analytics.analytics_view), name="support_analytics"),
    # The admin's language switcher posts here (django.views.i18n.set_language).
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("sandbox/", include("supportbot.sandbox.urls")),
    path("healthz", views_ops.healthz, name="healthz"),
    path("metrics", views_ops.prometheus_metrics, name="metrics"),
]
