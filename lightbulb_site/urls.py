from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from modeling.api import LegacyScoreAPI

admin.site.site_header = "Light Bulb administration"
admin.site.site_title = "Light Bulb admin"
admin.site.index_title = "Projects, people and data"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="projects:list", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("projects/", include("projects.urls")),
    path("projects/", include("labeling.urls")),
    path("projects/", include("modeling.urls")),
    path("api/", include("lightbulb_site.api_urls")),
    # Light Bulb's own endpoint, kept for its clients (with authentication and a "project" field).
    re_path(r"^score/?$", LegacyScoreAPI.as_view(), name="score"),
]
