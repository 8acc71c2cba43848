from django.urls import path

from . import views

app_name = "interchange"

urlpatterns = [
    path("<int:project_id>/export/", views.export, name="export"),
    path("<int:project_id>/data/", views.data, name="data"),
    path("<int:project_id>/data/server-folder/", views.server_folder, name="server-folder"),
    path("<int:project_id>/imports/<int:job_id>/", views.import_detail, name="import"),
    path("<int:project_id>/imports/<int:job_id>/cancel/", views.import_cancel, name="import-cancel"),
]
