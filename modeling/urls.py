from django.urls import path

from . import views

app_name = "modeling"

urlpatterns = [
    path("<int:project_id>/model/card/", views.model_card, name="card"),
    path("<int:project_id>/model/export/", views.export_model, name="export"),
    path("<int:project_id>/model/auto-label/", views.auto_label, name="auto-label"),
    path("<int:project_id>/model/auto-label/withdraw/", views.withdraw_auto_labels, name="auto-label-withdraw"),
    path("<int:project_id>/classify/", views.classify, name="classify"),
    path("<int:project_id>/model/finetune/", views.finetune, name="finetune"),
    path("<int:project_id>/model/finetune/cancel/", views.finetune_cancel, name="finetune-cancel"),
    path("<int:project_id>/model/finetune/pretrained/", views.finetune_pretrained, name="finetune-pretrained"),
    path("<int:project_id>/model/labels/", views.label_check, name="label-check"),
    path("<int:project_id>/model/labels/<int:item_id>/relabel/", views.label_check_relabel, name="label-check-relabel"),
    path("<int:project_id>/model/labels/<int:item_id>/keep/", views.label_check_keep, name="label-check-keep"),
    path("<int:project_id>/model/labels/<int:item_id>/exclude/", views.label_check_exclude, name="label-check-exclude"),
]
