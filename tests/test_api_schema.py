"""The API surface is pinned: its OpenAPI operations and URL names change only on purpose.

The lists are the API as it was when the hand-wired APIViews became viewsets on a router; a router, a viewset
action or a URL pattern that adds, drops or moves an endpoint fails here rather than silently.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

OPERATIONS = [
    ("post", "/api/auth/token/"),
    ("get", "/api/items/{item_id}/media"),
    ("get", "/api/projects/"),
    ("get", "/api/projects/{project_id}/"),
    ("post", "/api/projects/{project_id}/items/{item_id}/skip/"),
    ("get", "/api/projects/{project_id}/items/next/"),
    ("get", "/api/projects/{project_id}/judgements/"),
    ("post", "/api/projects/{project_id}/judgements/"),
    ("post", "/api/projects/{project_id}/judgements/undo/"),
    ("get", "/api/projects/{project_id}/members/"),
    ("post", "/api/projects/{project_id}/members/"),
    ("delete", "/api/projects/{project_id}/members/{username}/"),
    ("get", "/api/projects/{project_id}/model/"),
    ("get", "/api/projects/{project_id}/auto-labels/"),
    ("post", "/api/projects/{project_id}/auto-labels/"),
    ("post", "/api/projects/{project_id}/auto-labels/withdraw/"),
    ("get", "/api/projects/{project_id}/label-check/"),
    ("post", "/api/projects/{project_id}/label-check/keep/"),
    ("post", "/api/projects/{project_id}/label-check/exclude/"),
    ("get", "/api/projects/{project_id}/finetune/"),
    ("post", "/api/projects/{project_id}/finetune/"),
    ("post", "/api/projects/{project_id}/finetune/cancel/"),
    ("post", "/api/projects/{project_id}/finetune/pretrained/"),
    ("post", "/api/projects/{project_id}/predict/"),
    ("get", "/api/projects/{project_id}/proposals/"),
    ("post", "/api/projects/{project_id}/proposals/confirm/"),
    ("post", "/api/projects/{project_id}/score/"),
    ("get", "/api/projects/{project_id}/stats/"),
    ("get", "/api/projects/{project_id}/agreement/"),
    ("get", "/api/projects/{project_id}/guidelines/"),
    ("put", "/api/projects/{project_id}/guidelines/"),
    ("get", "/api/projects/{project_id}/label-reviews/"),
    ("post", "/api/projects/{project_id}/label-reviews/"),
    ("get", "/api/projects/{project_id}/disputes/"),
    ("get", "/api/projects/{project_id}/export/"),
    ("post", "/api/projects/"),
    ("post", "/api/projects/{project_id}/items/"),
    ("get", "/api/projects/{project_id}/imports/"),
    ("post", "/api/projects/{project_id}/imports/"),
    ("get", "/api/projects/{project_id}/imports/{job_id}/"),
    ("post", "/api/projects/{project_id}/imports/{job_id}/files/"),
    ("post", "/api/projects/{project_id}/imports/{job_id}/start/"),
    ("post", "/api/projects/{project_id}/imports/{job_id}/cancel/"),
    ("get", "/api/projects/{project_id}/server-folder/"),
    ("post", "/score/"),
]

HTTP_METHODS = {"get", "put", "patch", "post", "delete", "head", "options", "trace"}

# Names that pages, templates, payloads and clients reverse, with the paths they must keep giving.
URL_NAMES = [
    ("api:token", [], "/api/auth/token/"),
    ("api:schema", [], "/api/schema/"),
    ("api:index", [], "/api/"),
    ("api:docs", [], "/api/docs/"),
    ("api:projects", [], "/api/projects/"),
    ("api:project", [7], "/api/projects/7/"),
    ("api:members", [7], "/api/projects/7/members/"),
    ("api:member", [7, "ann.e@x"], "/api/projects/7/members/ann.e@x/"),
    ("api:next-items", [7], "/api/projects/7/items/next/"),
    ("api:skip", [7, 3], "/api/projects/7/items/3/skip/"),
    ("api:judgements", [7], "/api/projects/7/judgements/"),
    ("api:undo", [7], "/api/projects/7/judgements/undo/"),
    ("api:stats", [7], "/api/projects/7/stats/"),
    ("api:agreement", [7], "/api/projects/7/agreement/"),
    ("api:guidelines", [7], "/api/projects/7/guidelines/"),
    ("api:label-reviews", [7], "/api/projects/7/label-reviews/"),
    ("api:disputes", [7], "/api/projects/7/disputes/"),
    ("api:export", [7], "/api/projects/7/export/"),
    ("api:items", [7], "/api/projects/7/items/"),
    ("api:imports", [7], "/api/projects/7/imports/"),
    ("api:import", [7, 5], "/api/projects/7/imports/5/"),
    ("api:import-files", [7, 5], "/api/projects/7/imports/5/files/"),
    ("api:import-start", [7, 5], "/api/projects/7/imports/5/start/"),
    ("api:import-cancel", [7, 5], "/api/projects/7/imports/5/cancel/"),
    ("api:server-folder", [7], "/api/projects/7/server-folder/"),
    ("api:proposals", [7], "/api/projects/7/proposals/"),
    ("api:proposals-confirm", [7], "/api/projects/7/proposals/confirm/"),
    ("api:auto-labels", [7], "/api/projects/7/auto-labels/"),
    ("api:auto-labels-withdraw", [7], "/api/projects/7/auto-labels/withdraw/"),
    ("api:label-check", [7], "/api/projects/7/label-check/"),
    ("api:label-check-keep", [7], "/api/projects/7/label-check/keep/"),
    ("api:label-check-exclude", [7], "/api/projects/7/label-check/exclude/"),
    ("api:finetune", [7], "/api/projects/7/finetune/"),
    ("api:finetune-cancel", [7], "/api/projects/7/finetune/cancel/"),
    ("api:finetune-pretrained", [7], "/api/projects/7/finetune/pretrained/"),
    ("api:model", [7], "/api/projects/7/model/"),
    ("api:score", [7], "/api/projects/7/score/"),
    ("api:predict", [7], "/api/projects/7/predict/"),
    ("api:item-media", [3], "/api/items/3/media"),
    ("score", [], "/score"),
]


def test_it_keeps_the_exact_set_of_api_operations():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {
        (method, path) for path, item in schema["paths"].items() for method in item if method in HTTP_METHODS
    }
    assert operations == set(OPERATIONS)
    assert len(OPERATIONS) == len(set(OPERATIONS))


def test_it_keeps_every_url_name_and_path():
    assert [(name, reverse(name, args=args)) for name, args, _ in URL_NAMES] == [
        (name, path) for name, _, path in URL_NAMES
    ]
