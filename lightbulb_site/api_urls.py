from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authtoken.views import obtain_auth_token

from labeling import api as labeling_api
from modeling import api as modeling_api
from projects import api as projects_api

app_name = "api"

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("projects/", projects_api.ProjectListAPI.as_view(), name="projects"),
    path("projects/<int:project_id>/", projects_api.ProjectDetailAPI.as_view(), name="project"),
    path("projects/<int:project_id>/members/", projects_api.MemberListAPI.as_view(), name="members"),
    path("projects/<int:project_id>/members/<str:username>/", projects_api.MemberDetailAPI.as_view(), name="member"),
    path("projects/<int:project_id>/items/next/", labeling_api.NextItemsAPI.as_view(), name="next-items"),
    path("projects/<int:project_id>/items/<int:item_id>/skip/", labeling_api.SkipItemAPI.as_view(), name="skip"),
    path("projects/<int:project_id>/judgements/", labeling_api.JudgementListAPI.as_view(), name="judgements"),
    path("projects/<int:project_id>/judgements/undo/", labeling_api.UndoJudgementAPI.as_view(), name="undo"),
    path("projects/<int:project_id>/stats/", labeling_api.StatsAPI.as_view(), name="stats"),
    path("projects/<int:project_id>/proposals/", labeling_api.ProposalBatchAPI.as_view(), name="proposals"),
    path(
        "projects/<int:project_id>/proposals/confirm/", labeling_api.ConfirmBatchAPI.as_view(), name="proposals-confirm"
    ),
    path("projects/<int:project_id>/model/", modeling_api.ModelSummaryAPI.as_view(), name="model"),
    path("projects/<int:project_id>/score/", modeling_api.ScoreAPI.as_view(), name="score"),
    path("projects/<int:project_id>/predict/", modeling_api.PredictAPI.as_view(), name="predict"),
    path("items/<int:item_id>/media", labeling_api.ItemMediaAPI.as_view(), name="item-media"),
]
