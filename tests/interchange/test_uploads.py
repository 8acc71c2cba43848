"""Projects made and filled without a terminal (interchange.uploads): uploads of files, folders, zips, CSV and
JSONL through the API, read on the worker (django-q2, synchronous here) exactly as scanned files are; limits,
bad files, unsafe names, duplicates and server folders inside the allowed roots."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from interchange.models import DuplicatePolicy, ImportJob, ImportState
from interchange.uploads import UploadError, clean_name, do_open_upload, do_queue_import, do_receive_files
from projects.models import Item, ItemStatus, Project, Role
from projects.services import ProjectError, do_add_member, do_create_project, parse_classes
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    settings.LIGHTBULB_UPLOAD_ROOT = tmp_path / "uploads"
    settings.LIGHTBULB_SERVER_FOLDER_ROOTS = [(tmp_path / "datasets").resolve()]
    (tmp_path / "datasets").mkdir()


@pytest.fixture
def creator(alice):
    alice.user_permissions.add(Permission.objects.get(codename="add_project"))
    return alice


@pytest.fixture
def api(creator) -> APIClient:
    client = APIClient()
    client.force_authenticate(creator)
    return client


def new_project(api: APIClient, **overrides) -> dict:
    body = {"title": "Pets", "data_type": "images", "classes": "cat\ndog, bird", **overrides}
    response = api.post("/api/projects/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def upload(api, project_id: int, files: list[tuple[str, bytes]], django_capture_on_commit_callbacks, **extra):
    data = {"files": [SimpleUploadedFile(Path(name).name, content) for name, content in files],
            "paths": [name for name, _ in files], **extra}
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/projects/{project_id}/items/", data, format="multipart")
    return response


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def test_it_parses_classes_as_people_paste_them():
    assert parse_classes("cat\ndog, bird\n\n  fish ") == ["cat", "dog", "bird", "fish"]
    assert parse_classes(["a", " b ", ""]) == ["a", "b"]


def test_it_creates_a_project_through_the_api_owned_by_its_creator(api, creator):
    body = new_project(api)
    project = Project.objects.get(pk=body["id"])
    assert body["role"] == "owner" and body["classes"] == ["cat", "dog", "bird"]
    assert project.memberships.get().user == creator and project.memberships.get().role == Role.OWNER
    assert project.dataset_path.is_dir()


def test_it_refuses_bad_projects_with_the_reason(api):
    for body, needle in [
        ({"title": "x", "data_type": "images", "classes": "only-one"}, "at least two classes"),
        ({"title": "x", "data_type": "images", "classes": "Cat, cat"}, "listed twice"),
        ({"title": "  ", "data_type": "images", "classes": "a,b"}, "title"),
        ({"title": "x", "data_type": "video", "classes": "a,b"}, "data_type"),
    ]:
        response = api.post("/api/projects/", body, format="json")
        assert response.status_code == 400, body
        assert needle in json.dumps(response.json()), response.json()
    assert not Project.objects.exists()


def test_it_lets_only_permitted_users_create_projects(bob, settings):
    client = APIClient()
    client.force_authenticate(bob)
    response = client.post("/api/projects/", {"title": "x", "data_type": "text", "classes": "a,b"}, format="json")
    assert response.status_code == 403 and "may not create projects" in response.json()["detail"]
    settings.LIGHTBULB_ANYONE_CREATES_PROJECTS = True
    response = client.post("/api/projects/", {"title": "x", "data_type": "text", "label_type": "binary"}, format="json")
    assert response.status_code == 201 and response.json()["classes"] == ["YES", "NO"]


def test_it_imports_uploaded_images_keeping_their_folders(api, django_capture_on_commit_callbacks):
    project_id = new_project(api)["id"]
    files = [(f"pets/cats/{i}.png", png_bytes((200, 40, 40), seed=i)) for i in range(3)]
    response = upload(api, project_id, files, django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.state == ImportState.DONE and job.items_added == 3, (job.error, job.problems)
    project = Project.objects.get(pk=project_id)
    assert sorted(project.items.values_list("key", flat=True)) == [f"pets/cats/{i}.png" for i in range(3)]
    for item in project.items.all():
        assert project.item_file_path(item).read_bytes() == dict(files)[item.key]
        assert item.meta["width"] == 32
    status = api.get(f"/api/projects/{project_id}/imports/{job.pk}/").json()
    assert status["finished"] and status["items_added"] == 3


def test_it_reports_each_bad_file_and_imports_the_rest(api, django_capture_on_commit_callbacks):
    project_id = new_project(api)["id"]
    good = png_bytes((10, 200, 10))
    files = [("ok.png", good), ("broken.png", good[:60]), ("notes.exe", b"MZ..."), ("empty.png", b""),
             ("../escape.png", good + b"x")]
    response = upload(api, project_id, files, django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content
    refused = " | ".join(response.json()["refused"])
    assert "notes.exe: not a file type this project imports" in refused
    assert "empty.png: empty file" in refused and "climb out" in refused
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert (job.state, job.items_added, job.items_rejected) == (ImportState.DONE, 1, 1)
    broken = Item.objects.get(project_id=project_id, key="broken.png")
    assert broken.status == ItemStatus.REJECTED and "corrupt image" in broken.rejection_reason
    assert any("broken.png" in p for p in job.problems) and any("notes.exe" in p for p in job.problems)
    root = Project.objects.get(pk=project_id).dataset_root
    assert not (root.parent / "escape.png").exists()


def test_it_refuses_a_request_past_the_limits_and_keeps_nothing_of_it(api, creator, settings):
    project = Project.objects.get(pk=new_project(api)["id"])
    settings.LIGHTBULB_UPLOAD_MAX_FILES = 2
    job = do_open_upload(project, user=creator)
    files = [(f"{i}.png", SimpleUploadedFile(f"{i}.png", png_bytes((1, 2, 3), seed=i))) for i in range(3)]
    with pytest.raises(UploadError, match="at most 2 files"):
        do_receive_files(job, files=files)
    job.refresh_from_db()
    assert job.files_received == 0 and job.bytes_received == 0
    assert not any(p.is_file() for p in (settings.LIGHTBULB_UPLOAD_ROOT / ".incoming").rglob("*"))
    do_receive_files(job, files=files[:2])
    job.refresh_from_db()
    assert job.files_received == 2
    settings.LIGHTBULB_UPLOAD_MAX_FILE_BYTES = 10
    received = do_receive_files(job, files=[("big.png", SimpleUploadedFile("big.png", b"x" * 11))])
    assert received.refused == ["big.png: 11 bytes exceeds the 10 bytes limit for one file"]


def test_it_answers_too_many_files_in_one_request_with_json(api, settings):
    project_id = new_project(api)["id"]
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    data = {"files": [SimpleUploadedFile(f"{i}.png", b"x") for i in range(3)]}
    response = api.post(f"/api/projects/{project_id}/items/", data, format="multipart")
    assert response.status_code == 413 and "at most 2 files per request" in response.json()["detail"]


def test_it_unpacks_zips_with_clean_names_and_skips_what_it_cannot_use(api, django_capture_on_commit_callbacks):
    project_id = new_project(api)["id"]
    archive = zip_bytes({
        "photos/a.png": png_bytes((0, 0, 200), seed=1),
        "photos/sub\\b.png": png_bytes((0, 0, 200), seed=2),
        "../../outside.png": png_bytes((0, 0, 200), seed=3),
        "__MACOSX/photos/._a.png": b"junk",
        "photos/inner.zip": zip_bytes({"c.png": png_bytes((0, 0, 200), seed=4)}),
        "photos/readme.txt": b"hello",
    })
    response = upload(api, project_id, [("batch.zip", archive)], django_capture_on_commit_callbacks)
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.state == ImportState.DONE, job.error
    keys = sorted(Item.objects.filter(project_id=project_id).values_list("key", flat=True))
    assert keys == ["photos/a.png", "photos/sub/b.png"]
    problems = " | ".join(job.problems)
    assert "climb out" in problems and "zips inside zips" in problems and "readme.txt: not a file type" in problems
    root = Project.objects.get(pk=project_id).dataset_root
    assert not (root / "batch.zip").exists() and not list(root.parent.glob("outside.png"))


def test_it_fails_a_zip_that_unpacks_past_the_limit_and_imports_nothing(api, settings,
                                                                         django_capture_on_commit_callbacks):
    project_id = new_project(api)["id"]
    settings.LIGHTBULB_UPLOAD_MAX_BYTES = 200_000
    archive = zip_bytes({"a.png": png_bytes((9, 9, 9)), "huge.png": b"\0" * 1_000_000})  # compresses to ~1 KB
    response = upload(api, project_id, [("bomb.zip", archive)], django_capture_on_commit_callbacks)
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.state == ImportState.FAILED and "would hold more than" in job.error
    project = Project.objects.get(pk=project_id)
    assert not project.items.exists()
    assert not [p for p in project.dataset_root.rglob("*") if p.is_file()]


def test_it_takes_the_files_back_when_the_insert_fails(api, monkeypatch, django_capture_on_commit_callbacks):
    project_id = new_project(api)["id"]

    def refuse(*args, **kwargs):
        raise ValueError("disk quota")

    monkeypatch.setattr("interchange.uploads.do_add_items", refuse)
    with pytest.raises(ValueError):
        upload(api, project_id, [("a.png", png_bytes((5, 5, 5)))], django_capture_on_commit_callbacks)
    job = ImportJob.objects.get(project_id=project_id)
    assert job.state == ImportState.FAILED and "disk quota" in job.error
    project = Project.objects.get(pk=project_id)
    assert not project.items.exists() and not list(project.dataset_root.rglob("*.png"))


@pytest.mark.parametrize("policy", [DuplicatePolicy.DROP, DuplicatePolicy.KEEP])
def test_it_finds_identical_content_and_drops_or_keeps_it(api, policy, django_capture_on_commit_callbacks):
    project_id = new_project(api)["id"]
    same = png_bytes((50, 60, 70))
    upload(api, project_id, [("first.png", same)], django_capture_on_commit_callbacks)
    response = upload(api, project_id, [("again.png", same), ("first.png", png_bytes((1, 1, 1)))],
                      django_capture_on_commit_callbacks, duplicates=policy)
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.duplicates_found == 1 and job.state == ImportState.DONE
    again = Item.objects.get(project_id=project_id, key="again.png")
    assert again.meta["duplicate_of"] == "first.png"
    if policy == DuplicatePolicy.DROP:
        assert again.status == ItemStatus.REJECTED and again.rejection_reason == "duplicate of first.png"
        assert job.items_added == 1 and job.items_rejected == 0
    else:
        assert again.status == ItemStatus.UNLABELLED and job.items_added == 2
    # The same name with new content is a new item under a free name, not an overwrite.
    renamed = Item.objects.get(project_id=project_id, key="first (2).png")
    assert renamed.status == ItemStatus.UNLABELLED
    assert Item.objects.get(project_id=project_id, key="first.png").content_hash != renamed.content_hash


def test_it_imports_an_uploaded_csv_of_texts(api, django_capture_on_commit_callbacks):
    project_id = new_project(api, data_type="text", classes="spam, ham")["id"]
    csv_text = "id,text\n1,win money now\n2,lunch at noon?\n3,win money now\n"
    bad = "id,subject\n9,no text column here\n"
    response = upload(api, project_id, [("mail.csv", csv_text.encode()), ("other.csv", bad.encode())],
                      django_capture_on_commit_callbacks)
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.state == ImportState.DONE and job.items_added == 2 and job.duplicates_found == 1
    assert any("other.csv: no text column" in p for p in job.problems)
    texts = dict(Item.objects.filter(project_id=project_id).values_list("key", "text"))
    assert texts == {"1": "win money now", "2": "lunch at noon?", "3": "win money now"}


def test_it_imports_a_jsonl_body(api, django_capture_on_commit_callbacks):
    project_id = new_project(api, data_type="text", classes="pos, neg")["id"]
    body = b'{"text": "great"}\n{"text": "awful"}\nnot json\n'
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/projects/{project_id}/items/?name=reviews.jsonl", body,
                            content_type="application/x-ndjson")
    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.items_added == 2 and any("reviews.jsonl:3: invalid JSON" in p for p in job.problems)


def test_it_reads_a_server_folder_inside_the_allowed_roots_only(api, tmp_path, django_capture_on_commit_callbacks):
    project_id = new_project(api)["id"]
    folder = tmp_path / "datasets" / "birds"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes((3, 3, 3)))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "b.png").write_bytes(png_bytes((4, 4, 4)))
    (tmp_path / "datasets" / "sneaky").symlink_to(outside)

    check = api.get(f"/api/projects/{project_id}/server-folder/", {"path": str(folder)}).json()
    assert check["ok"] and check["files"] == 1
    for path in (str(outside), str(tmp_path / "datasets" / "sneaky"), str(tmp_path / "datasets" / "../elsewhere")):
        check = api.get(f"/api/projects/{project_id}/server-folder/", {"path": path}).json()
        assert not check["ok"] and "outside the folders this site allows" in check["message"], check
        response = api.post(f"/api/projects/{project_id}/items/", {"server_folder": path}, format="json")
        assert response.status_code == 400 and "outside" in response.json()["detail"]
    assert api.get(f"/api/projects/{project_id}/server-folder/", {"path": "relative/x"}).json()["ok"] is False

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/projects/{project_id}/items/", {"server_folder": str(folder)}, format="json")
    assert response.status_code == 202, response.content
    project = Project.objects.get(pk=project_id)
    assert project.dataset_path == folder.resolve() and list(project.items.values_list("key", flat=True)) == ["a.png"]
    # Once it reads a server folder, uploads go there by hand, not through the browser.
    response = upload(api, project_id, [("c.png", png_bytes((6, 6, 6)))], django_capture_on_commit_callbacks)
    assert response.status_code == 400 and "server folder" in response.json()["detail"]


def test_it_keeps_imports_to_owners(api, bob, charlie, django_capture_on_commit_callbacks):
    project = Project.objects.get(pk=new_project(api)["id"])
    do_add_member(project, user=bob, role=Role.REVIEWER)
    for user, code in ((bob, 403), (charlie, 404)):
        client = APIClient()
        client.force_authenticate(user)
        files = {"files": [SimpleUploadedFile("a.png", png_bytes((1, 1, 1)))]}
        assert client.post(f"/api/projects/{project.pk}/items/", files, format="multipart").status_code == code
        assert client.get(f"/api/projects/{project.pk}/imports/").status_code == code
        assert client.get(f"/api/projects/{project.pk}/server-folder/", {"path": "/"}).status_code == code
    assert not ImportJob.objects.exists()
    missing = api.get(f"/api/projects/{project.pk}/imports/999999/")
    assert missing.status_code == 404 and missing.json()["detail"]


def test_it_uploads_in_steps_and_refuses_files_after_the_start(api, creator, django_capture_on_commit_callbacks):
    project_id = new_project(api)["id"]
    job = api.post(f"/api/projects/{project_id}/imports/", {"duplicates": "keep"}, format="json").json()
    base = f"/api/projects/{project_id}/imports/{job['id']}"
    assert api.post(f"{base}/start/").status_code == 400  # nothing received yet
    for i in range(2):
        sent = api.post(f"{base}/files/", {"files": [SimpleUploadedFile("x.png", png_bytes((7, 7, 7), seed=i))],
                                            "paths": [f"set/{i}.png"]}, format="multipart")
        assert sent.status_code == 200 and sent.json()["stored"] == [f"set/{i}.png"]
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"{base}/start/").status_code == 202
    late = api.post(f"{base}/files/", {"files": [SimpleUploadedFile("y.png", b"1")]}, format="multipart")
    assert late.status_code == 409
    assert api.get(base + "/").json()["items_added"] == 2


def test_it_cleans_names_or_says_why_not():
    assert clean_name("a/./b\\c.png") == "a/b/c.png"
    assert clean_name("/etc/x:y.png") == "etc/x_y.png"
    for bad in ("../x.png", ".hidden/x.png", "", "a/.x.png"):
        with pytest.raises(UploadError):
            clean_name(bad)


def test_it_refuses_a_second_start_and_a_project_without_permission(creator, bob):
    project = do_create_project(creator=creator, title="T", data_type="images", label_type="binary", classes=[])
    job = do_open_upload(project, user=creator)
    with pytest.raises(UploadError, match="no files"):
        do_queue_import(job)
    with pytest.raises(ProjectError, match="may not create"):
        do_create_project(creator=bob, title="T", data_type="images", label_type="binary", classes=[])


def test_it_drops_unlabelled_copies_from_the_item_list_and_keeps_labelled_ones(api, creator,
                                                                               django_capture_on_commit_callbacks):
    from labeling.services import do_record_judgement
    from projects.services import do_drop_duplicates, do_keep_duplicate

    project_id = new_project(api)["id"]
    same = png_bytes((80, 80, 80))
    files = [("a.png", same), ("b.png", same), ("c.png", same), ("d.png", png_bytes((9, 1, 1)))]
    upload(api, project_id, files, django_capture_on_commit_callbacks, duplicates="keep")
    project = Project.objects.get(pk=project_id)
    c = project.items.get(key="c.png")
    do_record_judgement(project, item=c, user=creator, label="cat")
    result = do_drop_duplicates(project)
    assert (result.dropped, result.labelled_kept) == (1, 1)
    b = project.items.get(key="b.png")
    assert (b.status, b.rejection_reason) == (ItemStatus.REJECTED, "duplicate of a.png")
    assert b.meta["duplicate_of"] == "a.png"
    assert project.items.get(key="a.png").status == ItemStatus.UNLABELLED
    assert project.items.get(key="d.png").status == ItemStatus.UNLABELLED
    do_keep_duplicate(project, item=b)
    b.refresh_from_db()
    assert b.status == ItemStatus.UNLABELLED and b.rejection_reason == ""
    assert do_drop_duplicates(project).dropped == 0  # kept by an owner: not dropped again
    b.refresh_from_db()
    assert b.status == ItemStatus.UNLABELLED
    with pytest.raises(ProjectError, match="only an item dropped as a duplicate"):
        do_keep_duplicate(project, item=project.items.get(key="d.png"))


def test_it_keeps_an_open_upload_out_of_a_server_folder(api, creator, tmp_path, django_capture_on_commit_callbacks):
    project = Project.objects.get(pk=new_project(api)["id"])
    job = do_open_upload(project, user=creator)
    do_receive_files(job, files=[("x.png", SimpleUploadedFile("x.png", png_bytes((3, 3, 3))))])
    folder = tmp_path / "datasets" / "team-b"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes((1, 1, 1)))
    response = api.post(f"/api/projects/{project.pk}/items/", {"server_folder": str(folder)}, format="json")
    assert response.status_code == 400 and "not finished" in response.json()["detail"]
    # Were the folder switched anyway (an older server), starting the upload refuses to write there.
    Project.objects.filter(pk=project.pk).update(dataset_directory=str(folder))
    with pytest.raises(UploadError, match="server folder"):
        do_queue_import(job)
    assert sorted(p.name for p in folder.iterdir()) == ["a.png"]


def test_it_fails_an_import_the_worker_stops_and_takes_its_files_back(api, monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    project_id = new_project(api)["id"]

    def timeout(*args, **kwargs):
        raise SystemExit("django-q2's timeout")

    monkeypatch.setattr("interchange.uploads.do_add_items", timeout)
    with pytest.raises(SystemExit):
        upload(api, project_id, [("a.png", png_bytes((5, 5, 5)))], django_capture_on_commit_callbacks)
    job = ImportJob.objects.get(project_id=project_id)
    assert job.state == ImportState.FAILED and "stopped the import" in job.error
    assert not list(Project.objects.get(pk=project_id).dataset_root.rglob("*.png"))


def test_it_lets_an_owner_cancel_an_import_whose_worker_went_silent(api, creator, settings):
    from datetime import timedelta

    from django.utils import timezone

    from interchange.uploads import do_cancel_import

    project = Project.objects.get(pk=new_project(api)["id"])
    job = do_open_upload(project, user=creator)
    ImportJob.objects.filter(pk=job.pk).update(state=ImportState.RUNNING, heartbeat_at=timezone.now())
    job.refresh_from_db()
    with pytest.raises(UploadError, match="can no longer be cancelled"):
        do_cancel_import(job)  # a live worker has it
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=2))
    assert do_cancel_import(job).state == ImportState.CANCELLED


def test_it_skips_zip_members_over_the_file_limit_without_unpacking_them(api, settings,
                                                                           django_capture_on_commit_callbacks):
    project_id = new_project(api)["id"]
    settings.LIGHTBULB_UPLOAD_MAX_FILE_BYTES = 1_000_000
    settings.LIGHTBULB_UPLOAD_MAX_BYTES = 5_000_000
    # Eight members of 3 MB each would be 24 MB unpacked; each says so and none is unpacked.
    archive = zip_bytes({**{f"m{i}.png": b"\0" * 3_000_000 for i in range(8)}, "ok.png": png_bytes((4, 5, 6))})
    response = upload(api, project_id, [("many.zip", archive)], django_capture_on_commit_callbacks)
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.state == ImportState.DONE and job.items_added == 1, job.error
    assert sum("exceeds the 976.6 KB limit for one file" in p for p in job.problems) == 8, job.problems


def test_it_never_takes_the_upload_root_as_a_server_folder(api, settings, tmp_path):
    project_id = new_project(api)["id"]
    settings.LIGHTBULB_SERVER_FOLDER_ROOTS = [tmp_path.resolve()]  # a root that holds the uploads too
    for path in (settings.LIGHTBULB_UPLOAD_ROOT, settings.LIGHTBULB_UPLOAD_ROOT / "pets"):
        check = api.get(f"/api/projects/{project_id}/server-folder/", {"path": str(path)}).json()
        assert not check["ok"] and "uploaded files of projects" in check["message"], check


def test_it_skips_a_csv_row_longer_than_the_text_limit(api, settings, django_capture_on_commit_callbacks):
    project_id = new_project(api, data_type="text", classes="a, b")["id"]
    settings.LIGHTBULB_MAX_TEXT_BYTES = 50
    body = ("id,text\n1,short\n2," + "x" * 60 + "\n").encode()
    response = upload(api, project_id, [("rows.csv", body)], django_capture_on_commit_callbacks)
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.items_added == 1 and any("rows.csv:3: the text exceeds" in p for p in job.problems)
