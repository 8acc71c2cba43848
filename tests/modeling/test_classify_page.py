"""The upload-and-classify page: without JS (form post) and in Chromium (drop, paste, text), against the
real inference worker."""

from __future__ import annotations

import base64
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from projects.models import Project, Role
from projects.services import do_add_member
from tests.browser import login
from tests.conftest import png_bytes
from tests.modeling.conftest import BLUE_IMAGE, IMAGE
from tests.modeling.test_score import FOODY, SPORTY

pytestmark = pytest.mark.django_db


def bars(html: str) -> list[tuple[str, float]]:
    return [(name, float(p)) for name, p in re.findall(r'data-class="([^"]+)" data-p="([0-9.e-]+)"', html)]


def test_it_classifies_a_pasted_text_without_javascript(client, topics, alice):
    client.force_login(alice)
    url = f"/projects/{topics.pk}/classify/"
    page = client.get(url)
    assert page.status_code == 200 and b'id="classify-text"' in page.content
    response = client.post(url, {"text": FOODY})
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'Prediction: <strong class="prediction-label">food</strong>', html)
    found = bars(html)
    assert [name for name, _ in found] == ["food", "sport"] and abs(sum(p for _, p in found) - 1) < 1e-5
    assert found[0][1] > found[1][1]


def test_it_classifies_uploaded_images_without_javascript_and_shows_bad_files(client, colours, alice):
    client.force_login(alice)
    files = [
        SimpleUploadedFile("red.png", IMAGE, "image/png"), SimpleUploadedFile("broken.png", b"\x89PNG...", "image/png"),
    ]
    response = client.post(f"/projects/{colours.pk}/classify/", {"images": files})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="card result') == 2
    assert re.search(r'Prediction: <strong class="prediction-label">red</strong>', html)
    assert 'src="data:image/png;base64,' in html  # what was scored is shown next to the bars
    assert "not a recognisable image file" in html


def test_the_page_is_for_members_and_says_when_there_is_no_model(client, topics, alice, bob, charlie, tmp_path):
    url = f"/projects/{topics.pk}/classify/"
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(charlie)
    assert client.get(url).status_code == 404
    assert client.post(url, {"text": "x"}).status_code == 404
    do_add_member(topics, user=bob, role=Role.VIEWER)
    client.force_login(bob)
    assert client.get(url).status_code == 200

    fresh = Project.objects.create(slug="fresh", title="Fresh", data_type="text", classes=["a", "b"],
                                   dataset_directory=str(tmp_path))
    do_add_member(fresh, user=alice, role=Role.OWNER)
    client.force_login(alice)
    page = client.get(f"/projects/{fresh.pk}/classify/")
    assert page.status_code == 200 and b'id="no-model"' in page.content
    assert client.post(f"/projects/{fresh.pk}/classify/", {"text": "x"}).status_code == 409


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_the_browser_a_text_gets_bars_that_match_the_api(page, live_server, topics, alice):
    from rest_framework.test import APIClient

    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{topics.pk}/")
    page.click("#try-model")
    page.fill("#classify-text", SPORTY)
    page.press("#classify-text", "Control+Enter")
    page.wait_for_selector("#results .result .bar-row")
    assert page.inner_text("#results .prediction-label") == "sport"
    shown = {row.get_attribute("data-class"): float(row.get_attribute("data-p"))
             for row in page.query_selector_all("#results .bar-row")}
    api = APIClient()
    api.force_authenticate(alice)
    body = api.post(f"/api/projects/{topics.pk}/score/", {"type": "text", "texts": [SPORTY]}, format="json").json()
    assert shown == pytest.approx(dict(zip(body["labels"], body["scores"][0], strict=True)), abs=1e-6)
    widths = page.eval_on_selector_all("#results .bar-fill", "els => els.map(e => parseFloat(e.style.width))")
    assert widths[0] > 50 and abs(sum(widths) - 100) < 0.5  # the chart is the probabilities


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_the_browser_dropped_pasted_and_chosen_images_are_classified(page, live_server, colours, alice, tmp_path):
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{colours.pk}/classify/")

    def dispatch(kind: str, files: list[tuple[str, bytes]]) -> None:
        page.evaluate(
            """([kind, files]) => {
                const dt = new DataTransfer();
                for (const [name, b64] of files) {
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    dt.items.add(new File([bytes], name, { type: "image/png" }));
                }
                const event = kind === "drop"
                    ? new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true })
                    : new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true });
                (kind === "drop" ? document.getElementById("drop-zone") : document).dispatchEvent(event);
            }""",
            [kind, [[name, base64.b64encode(data).decode()] for name, data in files]],
        )

    dispatch("drop", [("red.png", IMAGE), ("blue.png", BLUE_IMAGE), ("broken.png", b"not an image")])
    page.wait_for_function("document.querySelectorAll('#results .result').length === 3")
    labels = page.eval_on_selector_all(
        "#results .result",
        "els => els.map(e => e.querySelector('.prediction-label')?.textContent"
        " || e.querySelector('.error').textContent)",
    )
    assert labels[:2] == ["red", "blue"] and "not a recognisable image file" in labels[2]
    assert page.locator("#results .result-preview").count() == 3  # previews of what was sent

    dispatch("paste", [("pasted.png", png_bytes((30, 40, 210), seed=77))])
    page.wait_for_function("document.querySelectorAll('#results .result').length === 1")
    assert page.inner_text("#results .prediction-label") == "blue"

    red = tmp_path / "mine.png"
    red.write_bytes(png_bytes((210, 30, 30), seed=78))
    page.set_input_files("#classify-files", str(red))
    page.wait_for_function("document.querySelector('#results .result .small')?.textContent === 'mine.png'")
    assert page.inner_text("#results .prediction-label") == "red"

    page.fill("#classify-url", "http://169.254.169.254/latest/meta-data/")
    page.click("#classify-submit")
    page.wait_for_selector("#classify-error:not([hidden])")
    assert "non-public address" in page.inner_text("#classify-error")
