"""E-mail-like texts are shown body first with the headers folded (the model still reads the whole text), and
search words are marked where a person searched for them."""

from __future__ import annotations

import pytest

from projects.rendering import highlight, split_email

MAIL = (
    "From someone@example.com  Thu Sep 19 11:04:56 2002\n"
    "Return-Path: <someone@example.com>\n"
    "Received: from mx.example.com\n"
    "\tby relay.example.org (Postfix)\n"
    "From: Ann Example <ann@example.com>\n"
    "To: team@example.org\n"
    "Subject: =?utf-8?q?Caf=C3=A9_meeting?=\n"
    "Date: Thu, 19 Sep 2002 11:04:55 +0100\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "\n"
    "See you at the café at noon.\n"
)


def test_it_splits_an_email_into_subject_sender_body_and_headers():
    parts = split_email(MAIL)
    assert parts is not None
    assert parts["subject"] == "Café meeting" and parts["from"] == "Ann Example <ann@example.com>"
    assert parts["body"] == "See you at the café at noon."
    assert parts["headers"].startswith("From someone@example.com") and "Received:" in parts["headers"]


def test_it_takes_the_plain_part_of_a_multipart_mail():
    mail = ("From: a@example.com\nSubject: parts\nMIME-Version: 1.0\n"
            'Content-Type: multipart/alternative; boundary="XX"\n\n--XX\nContent-Type: text/plain\n\nplain words\n'
            "--XX\nContent-Type: text/html\n\n<p>html words</p>\n--XX--\n")
    assert split_email(mail)["body"] == "plain words"


@pytest.mark.parametrize("text", [
    "Just a sentence.\n\nAnd another one.",
    "Note: buy milk\nTodo: call Bob\n\nnot headers: neither is well known",
    "Subject: hi\nthis line is not a header\n\nbody",
    "no blank line at all",
])
def test_it_leaves_texts_that_are_not_mail_alone(text):
    assert split_email(text) is None


def test_it_marks_search_words_and_escapes_everything_else():
    assert highlight("Win <b>money</b> now, WIN!", "win money") == (
        "<mark>Win</mark> &lt;b&gt;<mark>money</mark>&lt;/b&gt; now, <mark>WIN</mark>!")
    assert highlight("<i>x</i>", "") == "&lt;i&gt;x&lt;/i&gt;"
    assert highlight("abcdef", "bc", limit=4) == "a<mark>bc</mark>…"


@pytest.mark.django_db
def test_the_item_page_shows_the_body_first_and_marks_the_search(client, tmp_path, alice):
    from interchange.config import load_config
    from interchange.importer import do_import_config
    from tests.conftest import write_config

    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "m1.txt").write_text(MAIL, encoding="utf-8")
    cfg = write_config(tmp_path / "mail.yml", "task: {title: Mail}\ndataset: {directory: mail, data_type: text}\n"
                       "label: {type: binary}\nmodel: {directory: out}\nuser: alice\n")
    project = do_import_config(load_config(cfg)).project
    item = project.items.get()
    client.force_login(alice)
    page = client.get(f"/projects/{project.pk}/items/{item.pk}/?q=noon").content.decode()
    assert '<h2 class="email-subject">Café meeting</h2>' in page
    assert "See you at the café at <mark>noon</mark>." in page
    assert page.index("See you at the café") < page.index("<summary>Headers</summary>")
    api = client.get(f"/api/projects/{project.pk}/items/next/").json()
    assert api[0]["email"]["subject"] == "Café meeting" and api[0]["data"] == item.text
