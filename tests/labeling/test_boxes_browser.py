"""The box screen in real Chromium: boxes drawn, moved and resized with the mouse, typed by key and button, stepped
through and removed with the keyboard, zoomed and panned, saved with Enter in the original image's pixels, undone
with the boxes back, "no objects" as an answer; a refused answer loses nothing."""

from __future__ import annotations

import pytest

from labeling.models import Judgement
from projects.models import Item, Project
from tests.browser import login
from tests.labeling.test_boxes import SIZES, make_detection_project
from tests.labeling.test_spans_browser import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shown_item(page) -> Item:
    page.wait_for_selector("#item-view[data-item-id] .box-stage .box-image")
    page.wait_for_function("window.__lbBoxes && window.__lbBoxes.width > 0 && window.__lbBoxes.zoom > 0")
    return Item.objects.get(pk=int(page.get_attribute("#item-view", "data-item-id")))


def open_screen(page, live_server, project) -> Item:
    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_url(f"{live_server.url}/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    assert "boxes drawn" in page.inner_text("main").lower()
    page.click("#start-labeling")
    return shown_item(page)


def at(page, x: float, y: float) -> tuple[float, float]:
    """Where image pixel (x, y) is on the screen now (the stage's corner, the pan, the zoom)."""
    return tuple(page.evaluate(
        "([x, y]) => { const s = window.__lbBoxes, r = s.stage.getBoundingClientRect();"
        " return [r.left + s.panX + x * s.zoom, r.top + s.panY + y * s.zoom]; }", [x, y]))


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*at(page, *start))
    page.mouse.down()
    page.mouse.move(*at(page, (start[0] + end[0]) / 2, (start[1] + end[1]) / 2), steps=3)
    page.mouse.move(*at(page, *end), steps=3)
    page.mouse.up()


def boxes(page) -> list[dict]:
    return page.evaluate("window.LBScreen.answer().boxes")


def test_it_draws_moves_resizes_and_saves_boxes_in_image_pixels(page, live_server, tmp_path, alice):
    project = make_detection_project(tmp_path)
    item = open_screen(page, live_server, project)
    width, height = SIZES[item.key]
    assert page.evaluate("[window.__lbBoxes.width, window.__lbBoxes.height]") == [width, height]
    assert page.locator(".box-class", has_text="person").locator("kbd").inner_text() == "2 · p"

    # Draw a car (the first class is current), then a box typed person with its key.
    drag(page, (2, 3), (12, 15))
    assert boxes(page) == [{"xmin": 2, "ymin": 3, "xmax": 12, "ymax": 15, "label": "car"}]
    drag(page, (14, 4), (24, 20))
    page.keyboard.press("p")  # the selected (just drawn) box becomes a person
    assert [b["label"] for b in boxes(page)] == ["car", "person"]
    assert page.inner_text("#box-count") == "2 boxes" and page.locator(".box.selected").count() == 1
    # Arrows move the selected box a pixel; Shift+arrow ten... within the image.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    assert boxes(page)[1] == {"xmin": 15, "ymin": 5, "xmax": 25, "ymax": 21, "label": "person"}
    # Resize the person box by its south-east handle; move the car by dragging its body.
    drag(page, (25, 21), (27, 25))
    assert boxes(page)[1] == {"xmin": 15, "ymin": 5, "xmax": 27, "ymax": 25, "label": "person"}
    drag(page, (7, 9), (8, 10))
    assert boxes(page)[0] == {"xmin": 3, "ymin": 4, "xmax": 13, "ymax": 16, "label": "car"}
    page.keyboard.press("Enter")

    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{item.pk}'")
    judgement = wait_for(lambda: Judgement.objects.filter(item=item, is_current=True).first())
    assert judgement.user == alice and judgement.label == "2 boxes"
    assert judgement.value == {"boxes": [
        {"xmin": 3, "ymin": 4, "xmax": 13, "ymax": 16, "label": "car"},
        {"xmin": 15, "ymin": 5, "xmax": 27, "ymax": 25, "label": "person"},
    ]}

    # Undo brings the image back with its boxes; Tab selects the first, x removes it; Enter saves the rest.
    page.keyboard.press("u")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId == '{item.pk}'")
    page.wait_for_function("window.LBScreen.answer().boxes.length == 2")
    page.keyboard.press("Tab")
    page.keyboard.press("x")
    assert boxes(page) == [{"xmin": 15, "ymin": 5, "xmax": 27, "ymax": 25, "label": "person"}]
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId != '{item.pk}'")
    wait_for(lambda: Judgement.objects.filter(item=item, is_current=True, label="1 box").exists())

    # The next image: Enter with no boxes is the answer "no objects here".
    following = shown_item(page)
    assert page.inner_text("#box-count") == "no objects"
    page.keyboard.press("Enter")
    judgement = wait_for(lambda: Judgement.objects.filter(item=following, is_current=True).first())
    assert judgement.value == {"boxes": []} and judgement.label == "none"


def test_zoom_keeps_the_pixel_under_the_pointer_and_drawing_stays_in_image_pixels(page, live_server, tmp_path,
                                                                                  alice):
    project = make_detection_project(tmp_path)
    open_screen(page, live_server, project)
    fitted = page.evaluate("window.__lbBoxes.zoom")
    pointer = at(page, 10, 10)
    page.mouse.move(*pointer)
    page.mouse.wheel(0, -300)
    page.wait_for_function(f"window.__lbBoxes.zoom > {fitted}")
    # The image point under the pointer is still under it, the image bigger around it.
    assert at(page, 10, 10) == pytest.approx(pointer, abs=0.5)
    assert at(page, 20, 20)[0] - pointer[0] > 10 * fitted
    drag(page, (8, 8), (12, 13))
    assert boxes(page) == [{"xmin": 8, "ymin": 8, "xmax": 12, "ymax": 13, "label": "car"}]
    # Space + drag pans: the box stays where it is on the image.
    before = page.evaluate("[window.__lbBoxes.panX, window.__lbBoxes.panY]")
    page.keyboard.down(" ")
    page.mouse.move(400, 300)
    page.mouse.down()
    page.mouse.move(450, 330, steps=3)
    page.mouse.up()
    page.keyboard.up(" ")
    after = page.evaluate("[window.__lbBoxes.panX, window.__lbBoxes.panY]")
    assert [round(a - b) for a, b in zip(after, before, strict=True)] == [50, 30]
    assert len(boxes(page)) == 1
    page.keyboard.press("f")
    assert page.evaluate("window.__lbBoxes.zoom") == pytest.approx(fitted)


def test_a_refused_answer_keeps_the_boxes_drawn(page, live_server, tmp_path, alice):
    project = make_detection_project(tmp_path)
    item = open_screen(page, live_server, project)
    drag(page, (1, 1), (9, 9))
    page.keyboard.press("2")  # person
    # Meanwhile an owner renames the class: the server refuses the answer, and nothing the person drew is lost.
    Project.objects.filter(pk=project.pk).update(classes=["car", "pedestrian"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#toast:not([hidden])")
    assert "not a class of this project" in page.inner_text("#toast")
    page.wait_for_function(f"document.querySelector('#item-view').dataset.itemId == '{item.pk}'")
    assert boxes(page) == [{"xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9, "label": "person"}]
    assert not Judgement.objects.filter(item=item).exists()


def test_its_key_list_names_the_box_keys(page, live_server, tmp_path, alice):
    project = make_detection_project(tmp_path)
    open_screen(page, live_server, project)
    page.keyboard.press("?")
    dialog = page.locator("dialog[open]")
    text = dialog.inner_text()
    assert "select the next / previous box" in text and "remove the selected box" in text
    assert "no objects here" in text and "undo your last image" in text


def test_the_review_queue_shows_the_models_boxes_dashed_and_enter_keeps_them(page, live_server, tmp_path, alice):
    from labeling.models import JudgementSource
    from tests.labeling.test_boxes import box, scored, seed_detections

    project = make_detection_project(tmp_path)
    seed_detections(project, {
        "wide.png": ([scored(box(2, 3, 30, 39), 0.97), scored(box(31, 0, 64, 40, "person"), 0.93)], 0.93, True, True),
        "tall.png": ([scored(box(1, 1, 20, 20), 0.92)], 0.92, True, True),
    })
    # TEST is blind (no guess is shown on it): these images are all TRAIN.
    project.test_ratio, project.test_min_judgements = 0.0, 0
    project.save(update_fields=["test_ratio", "test_min_judgements"])
    open_screen(page, live_server, project)
    link = page.locator("#review-link")
    link.wait_for()
    assert "images the model is sure of" in link.inner_text()
    link.click()
    page.wait_for_selector("#review-mode")
    first = shown_item(page)
    assert first.key == "wide.png"  # the most confident first
    page.wait_for_selector(".box-stage .proposed")
    assert page.locator(".box-stage .proposed").count() == 2
    tags = page.locator(".box-stage .proposed").all_text_contents()
    assert any("car 0.97" in t for t in tags) and any("person 0.93" in t for t in tags)
    page.keyboard.press("Enter")  # keeps the model's boxes as they are
    wait_for(lambda: Judgement.objects.filter(item=first, is_current=True).exists())
    kept = Judgement.objects.get(item=first, is_current=True)
    assert kept.source == JudgementSource.CONFIRMED_PROPOSAL
    assert [(b["xmin"], b["label"]) for b in kept.value["boxes"]] == [(2.0, "car"), (31.0, "person")]

    second = Item.objects.get(pk=int(page.wait_for_selector(
        f"#item-view[data-item-id]:not([data-item-id='{first.pk}'])").get_attribute("data-item-id")))
    assert second.key == "tall.png"
    page.wait_for_selector(".box-stage .proposed")
    page.keyboard.press("Tab")  # selects the model's box
    page.keyboard.press("x")  # the model was wrong: no car here
    page.keyboard.press("Enter")
    wait_for(lambda: Judgement.objects.filter(item=second, is_current=True).exists())
    fixed = Judgement.objects.get(item=second, is_current=True)
    assert fixed.source == JudgementSource.HUMAN and fixed.value["boxes"] == []
