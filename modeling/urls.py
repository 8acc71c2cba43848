from django.urls import path

from . import views

app_name = "modeling"

urlpatterns = [
    path("<int:project_id>/model/card/", views.model_card, name="card"),
]
