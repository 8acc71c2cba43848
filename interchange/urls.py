from django.urls import path

from . import views

app_name = "interchange"

urlpatterns = [
    path("<int:project_id>/export/", views.export, name="export"),
]
