from django.urls import path

from . import views

app_name = "labeling"

urlpatterns = [
    path("<int:project_id>/label/", views.label_page, name="label"),
    path("<int:project_id>/items/", views.item_browser, name="browser"),
    path("<int:project_id>/proposals/review/", views.review_batch, name="review"),
    path("<int:project_id>/proposals/review/undo/", views.undo_batch, name="undo-batch"),
    path("<int:project_id>/review/labels/", views.review_labels, name="review-labels"),
    path("<int:project_id>/review/disputes/", views.review_disputes, name="review-disputes"),
    path("<int:project_id>/items/<int:item_id>/", views.item_detail, name="item"),
    path("<int:project_id>/items/<int:item_id>/relabel/", views.relabel, name="relabel"),
    path("<int:project_id>/items/<int:item_id>/keep/", views.keep_duplicate, name="keep-duplicate"),
    path("<int:project_id>/items/duplicates/drop/", views.drop_duplicates, name="drop-duplicates"),
]
