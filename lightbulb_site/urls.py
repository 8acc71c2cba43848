from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from modeling.api import LegacyScoreAPI


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    # Resolved per request: the hashed name exists only once collectstatic has run.
    return HttpResponsePermanentRedirect(static("img/bulb.svg"))


admin.site.site_header = "Light Bulb administration"
admin.site.site_title = "Light Bulb admin"
admin.site.index_title = "Projects, people and data"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="projects:list", permanent=False)),
    # Browsers ask for /favicon.ico on pages that name none (the admin's).
    path("favicon.ico", favicon),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("accounts/password/reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("accounts/password/reset/sent/", auth_views.PasswordResetDoneView.as_view(
        extra_context={"timeout_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400)}), name="password_reset_done"),
    path("accounts/password/reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("accounts/password/reset/complete/", auth_views.PasswordResetCompleteView.as_view(),
         name="password_reset_complete"),
    path("admin/", admin.site.urls),
    path("projects/", include("projects.urls")),
    path("projects/", include("labeling.urls")),
    path("projects/", include("modeling.urls")),
    path("projects/", include("interchange.urls")),
    path("api/", include("lightbulb_site.api_urls")),
    # Light Bulb's own endpoint, kept for its clients (with authentication and a "project" field).
    re_path(r"^score/?$", LegacyScoreAPI.as_view(), name="score"),
]
