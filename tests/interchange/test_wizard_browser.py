"""A team's first hour in real Chromium, touching no terminal and no admin page: sign in, make a project in the
wizard, upload a folder of images (or a CSV of texts), watch the import, label everything, export the labels."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from interchange.models import ImportJob, ImportState
from labeling.models import Judgement
from projects.models import Item, ItemStatus, Project
from tests.browser import login
from tests.conftest import png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    settings.LIGHTBULB_UPLOAD_ROOT = tmp_path / "uploads"
    settings.LIGHTBULB_SERVER_FOLDER_ROOTS = [(tmp_path / "datasets").resolve()]


@pytest.fixture
def lead(django_user_model):
    user = django_user_model.objects.create_user("lead", password="lead-pass-123")
    user.user_permissions.add(Permission.objects.get(codename="add_project"))
    return user


def _wait(condition, *, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _create_project(page, live_server, *, title: str, data_type: str, classes: list[str]) -> Project:
    page.goto(f"{live_server.url}/projects/")
    page.click("#new-project")
    page.fill("#id_title", title)
    page.check(f"input[name=data_type][value={data_type}]")
    chip_input = page.locator("#class-chips .chip-input")
    chip_input.fill(classes[0])
    chip_input.press("Enter")
    # The rest pasted as one comma-separated line, as from a spreadsheet.
    chip_input.focus()
    page.evaluate(
        """text => {
            const input = document.querySelector('#class-chips .chip-input');
            const data = new DataTransfer();
            data.setData('text/plain', text);
            input.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
        }""",
        ", ".join(classes[1:]),
    )
    assert page.locator("#class-chips .chip span").all_inner_texts() == classes
    page.click("#create-project")
    page.wait_for_url("**/data/")
    project = Project.objects.get(title=title)
    assert project.classes == classes and project.data_type == data_type
    return project


def _upload_and_wait(page, project: Project) -> ImportJob:
    page.click("#upload-submit")
    page.wait_for_url("**/imports/*/")
    _wait(lambda: ImportJob.objects.filter(project=project, state__in=[ImportState.DONE, ImportState.FAILED]).exists(),
          what="the import")
    job = ImportJob.objects.get(project=project)
    page.reload()
    page.wait_for_selector("#import-summary")
    return job


def _label_everything(page, project: Project, key: str) -> None:
    page.click("#start-labeling")
    page.wait_for_selector("#item-view[data-item-id]")
    wanted = project.items.filter(status=ItemStatus.UNLABELLED).count()
    for _ in range(wanted):
        before = Judgement.objects.filter(project=project).count()
        page.wait_for_function("document.querySelector('#item-view').dataset.itemId")
        page.keyboard.press(key)
        _wait(lambda before=before: Judgement.objects.filter(project=project).count() > before, what="a label")
    page.wait_for_selector("#done:not([hidden])")
    assert not project.items.filter(status=ItemStatus.UNLABELLED).exists()


def _export(page, live_server, project: Project, fmt: str) -> str:
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.click("#export-link")
    page.check(f"input[name=as][value={fmt}]")
    with page.expect_download() as download:
        page.click("#export-download")
    return Path(download.value.path()).read_text(encoding="utf-8")


def test_it_goes_from_sign_in_to_an_exported_image_project(page, live_server, lead, tmp_path):
    folder = tmp_path / "holiday"
    for i in range(3):
        (folder / "red").mkdir(parents=True, exist_ok=True)
        (folder / "red" / f"r{i}.png").write_bytes(png_bytes((220, 30, 30), seed=i))
        (folder / "green").mkdir(parents=True, exist_ok=True)
        (folder / "green" / f"g{i}.png").write_bytes(png_bytes((30, 220, 30), seed=10 + i))
    (folder / "red" / "copy-of-r0.png").write_bytes((folder / "red" / "r0.png").read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")

    login(page, live_server, "lead", "lead-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    project = _create_project(page, live_server, title="Holiday colours", data_type="images",
                              classes=["Red", "Green", "Blue"])

    page.set_input_files("#upload-folder", str(folder))
    page.wait_for_function("document.querySelector('#upload-chosen').textContent.startsWith('8 file')")
    job = _upload_and_wait(page, project)
    assert (job.state, job.items_added, job.items_rejected, job.duplicates_found) == ("done", 6, 1, 1), job.problems
    assert page.inner_text("#import-summary [data-count=added]") == "6"
    assert "broken.png" in page.inner_text("#import-problems")
    keys = set(project.items.values_list("key", flat=True))
    assert {"holiday/red/r0.png", "holiday/green/g2.png", "holiday/broken.png"} <= keys

    _label_everything(page, project, "r")
    assert set(Judgement.objects.filter(project=project, is_current=True).values_list("label", flat=True)) == {"Red"}

    body = _export(page, live_server, project, "csv")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 6 and {row["label"] for row in rows} == {"Red"}
    assert {row["path"] for row in rows} <= keys

    # The dropped copy is found from the item list and can be brought back.
    page.goto(f"{live_server.url}/projects/{project.pk}/items/?duplicates=1")
    assert page.locator(".item-tile").count() == 2
    copy = Item.objects.get(project=project, status=ItemStatus.REJECTED, meta__duplicate_of__isnull=False)
    assert {copy.key, copy.meta["duplicate_of"]} == {"holiday/red/copy-of-r0.png", "holiday/red/r0.png"}
    page.goto(f"{live_server.url}/projects/{project.pk}/items/{copy.pk}/")
    page.click("#keep-duplicate")
    page.wait_for_selector(".msg-success")
    copy.refresh_from_db()
    assert copy.status == ItemStatus.UNLABELLED


def test_it_makes_a_text_project_from_an_uploaded_csv(page, live_server, lead, tmp_path):
    data = tmp_path / "mail.csv"
    data.write_text("id,text\nm1,Win a free cruise now\nm2,Minutes of Monday's meeting\nm3,Cheap pills online\n",
                    encoding="utf-8")
    login(page, live_server, "lead", "lead-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    project = _create_project(page, live_server, title="Inbox", data_type="text", classes=["Spam", "Ham", "Unsure"])

    page.set_input_files("#upload-files", str(data))
    job = _upload_and_wait(page, project)
    assert (job.state, job.items_added) == ("done", 3)
    assert sorted(project.items.values_list("key", flat=True)) == ["m1", "m2", "m3"]

    _label_everything(page, project, "s")
    body = _export(page, live_server, project, "jsonl")
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    assert sorted(line["path"] for line in lines) == ["m1", "m2", "m3"]
    assert {line["label"] for line in lines} == {"Spam"} and all(line["labelled_by"] == "lead" for line in lines)


def test_it_checks_a_server_folder_as_it_is_typed(page, live_server, lead, tmp_path):
    inside = tmp_path / "datasets" / "scans"
    inside.mkdir(parents=True)
    (inside / "a.png").write_bytes(png_bytes((1, 2, 3)))
    login(page, live_server, "lead", "lead-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    project = _create_project(page, live_server, title="Scans", data_type="images", classes=["A", "B", "C"])
    page.fill("#folder-path", "/etc")
    page.wait_for_function("document.querySelector('#folder-check').textContent.includes('outside')")
    assert page.is_disabled("#folder-submit")
    page.fill("#folder-path", str(inside))
    page.wait_for_function("document.querySelector('#folder-check').textContent.includes('1 file')")
    page.click("#folder-submit")
    page.wait_for_url("**/imports/*/")
    _wait(lambda: project.items.count() == 1, what="the folder import")
    project.refresh_from_db()
    assert project.dataset_path == inside.resolve()
