from django.urls import path

from . import views

app_name = "projects"

urlpatterns = [
    path("", views.project_list, name="list"),
    path("new/", views.project_new, name="new"),
    path("<int:project_id>/", views.project_detail, name="detail"),
    path("<int:project_id>/members/", views.members, name="members"),
    path("<int:project_id>/guidelines/", views.guidelines, name="guidelines"),
    path("<int:project_id>/labelling/settings/", views.labelling_settings, name="labelling-settings"),
    path("<int:project_id>/proposals/settings/", views.proposal_settings, name="proposal-settings"),
    path("<int:project_id>/keys/", views.class_keys, name="class-keys"),
]
