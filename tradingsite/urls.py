from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from operations import views
from tradingsite.api_schema import SchemaFormatNegotiation

handler404 = "operations.views.not_found"
handler500 = "operations.views.server_error"

urlpatterns = [
    path("", views.dashboard, name="home"),
    path("positions/<int:position_id>/", views.position_detail, name="position-page"),
    path("login/", auth_views.LoginView.as_view(template_name="dashboard/login.html",
                                                redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(
        content_negotiation_class=SchemaFormatNegotiation), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"),
         name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/", include("lifecycle.api_urls")),
    path("api/", include("risk.api_urls")),
    path("api/", include("execution.api_urls")),
    path("api/", include("analytics.api_urls")),
    path("api/", include("operations.api_urls")),
    path("api/", include("bots.api_urls")),
]
