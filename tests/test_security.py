"""Issue 19, findings 2 and 8: sign-in throttling, security headers, password pages, the schema and the
inference worker's key."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from tests.conftest import REPO

pytestmark = pytest.mark.django_db

LIMIT = 10  # settings.AXES_FAILURE_LIMIT's default (LIGHTBULB_LOGIN_FAILURE_LIMIT)


def _login_page(client, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def _token(client, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(reverse("api:token"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_it_locks_an_account_out_of_the_login_page_after_too_many_wrong_passwords(client, bob):
    for _ in range(LIMIT - 1):
        assert _login_page(client, "bob", "guess").status_code == 200  # the form again, with its error
    locked = _login_page(client, "bob", "guess")
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.content.decode()
    assert int(locked["Retry-After"]) == 15 * 60
    # The right password no longer helps, from this address or any other, until the cool-off passes.
    assert _login_page(client, "bob", "bob-pass-123").status_code == 429
    assert _login_page(client, "bob", "bob-pass-123", ip="10.9.9.9").status_code == 429
    assert "_auth_user_id" not in client.session


def test_it_locks_an_address_that_guesses_many_accounts(client, alice, bob, charlie):
    for i in range(LIMIT):
        _login_page(client, f"nobody{i}", "guess", ip="10.0.0.7")
    assert _login_page(client, "alice", "alice-pass-123", ip="10.0.0.7").status_code == 429
    # Another address signs in as usual.
    assert _login_page(client, "alice", "alice-pass-123", ip="10.0.0.8").status_code == 302


def test_the_lock_ends_after_the_cool_off(client, bob, settings):
    from axes.models import AccessAttempt

    for _ in range(LIMIT):
        _login_page(client, "bob", "guess")
    assert _login_page(client, "bob", "bob-pass-123").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert _login_page(client, "bob", "bob-pass-123").status_code == 302


def test_the_token_endpoint_answers_429_json_when_locked(client, bob):
    for _ in range(LIMIT - 1):
        response = _token(client, "bob", "guess")
        assert response.status_code == 400 and "non_field_errors" in response.json()
    locked = _token(client, "bob", "guess")
    assert locked.status_code == 429
    assert locked["Content-Type"] == "application/json"
    assert "Too many failed sign-ins" in locked.json()["detail"]
    assert _token(client, "bob", "bob-pass-123").status_code == 429
    # Failures on one door count at the others: the login page is locked for bob too.
    assert _login_page(client, "bob", "bob-pass-123").status_code == 429


def test_the_token_endpoint_still_gives_a_token_to_the_right_password(client, bob):
    from rest_framework.authtoken.models import Token

    response = _token(client, "bob", "bob-pass-123")
    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=bob).key}


def test_the_admin_login_is_throttled_too(client, django_user_model):
    django_user_model.objects.create_superuser("root", password="root-pass-123")
    def admin_login(password: str, ip: str) -> int:
        return client.post("/admin/login/", {"username": "root", "password": password}, REMOTE_ADDR=ip).status_code

    for _ in range(LIMIT - 1):
        assert admin_login("x", "10.0.0.3") == 200
    assert admin_login("x", "10.0.0.3") == 429
    assert admin_login("root-pass-123", "10.0.0.4") == 429


def test_an_administrator_resets_a_lock_out(client, bob):
    from django.core.management import call_command

    for _ in range(LIMIT):
        _login_page(client, "bob", "guess")
    call_command("axes_reset_username", "bob")
    call_command("axes_reset_ip", "10.0.0.1")
    assert _login_page(client, "bob", "bob-pass-123").status_code == 302


def test_the_counted_address_is_the_client_the_trusted_proxy_saw(rf, settings):
    from lightbulb_site.security import client_ip

    request = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")
    settings.LIGHTBULB_TRUSTED_PROXIES = 0
    assert client_ip(request) == "10.0.0.2"  # no proxy: the header is the client's own invention
    settings.LIGHTBULB_TRUSTED_PROXIES = 1
    assert client_ip(request) == "203.0.113.9"  # what our proxy appended, not what the client wrote
    settings.LIGHTBULB_TRUSTED_PROXIES = 2
    assert client_ip(request) == "1.2.3.4"


# -- headers -------------------------------------------------------------------------------------------


def test_every_page_carries_a_strict_content_security_policy(client, alice):
    client.force_login(alice)
    for url in ("/accounts/login/", "/projects/", "/api/projects/"):
        csp = client.get(url)["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert client.get("/projects/")["X-Frame-Options"] == "DENY"


def _deploy_check(extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "LIGHTBULB_DATA_ROOT": os.environ["LIGHTBULB_DATA_ROOT"], "DEBUG": "0",
           "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "labels.example.com", **extra}
    return subprocess.run([sys.executable, str(REPO / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
                          env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_the_documented_https_switch():
    result = _deploy_check({"LIGHTBULB_HTTPS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    # Without it, Django names exactly what is missing.
    plain = _deploy_check({})
    assert plain.returncode == 1
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in plain.stdout + plain.stderr


def test_the_https_switch_redirects_and_sends_hsts():
    code = ("import django; django.setup(); from django.test import Client; c = Client();"
            "r = c.get('/accounts/login/', HTTP_HOST='labels.example.com'); print(r.status_code, r['Location']);"
            "r = c.get('/accounts/login/', HTTP_HOST='labels.example.com', secure=True);"
            "print(r.status_code, r['Strict-Transport-Security'])")
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "labels.example.com",
           "LIGHTBULB_HTTPS": "1", "DJANGO_SETTINGS_MODULE": "lightbulb_site.settings"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    redirect, hsts = out.stdout.strip().splitlines()
    assert redirect == "301 https://labels.example.com/accounts/login/"
    assert hsts == "200 max-age=31536000; includeSubDomains; preload"


# -- accounts ------------------------------------------------------------------------------------------


def test_a_member_changes_their_password(client, bob):
    client.force_login(bob)
    page = client.get(reverse("password_change"))
    assert page.status_code == 200 and b"Change your password" in page.content
    wrong = client.post(reverse("password_change"), {"old_password": "nope", "new_password1": "x",
                                                     "new_password2": "x"})
    assert wrong.status_code == 200 and b"Your old password was entered incorrectly" in wrong.content
    done = client.post(reverse("password_change"), {"old_password": "bob-pass-123",
                                                    "new_password1": "a-new-long-phrase-42",
                                                    "new_password2": "a-new-long-phrase-42"})
    assert done.status_code == 302 and done["Location"] == reverse("password_change_done")
    bob.refresh_from_db()
    assert bob.check_password("a-new-long-phrase-42")
    assert client.get("/projects/").status_code == 200  # still signed in here


def test_the_password_change_page_needs_a_sign_in(client):
    response = client.get(reverse("password_change"))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_a_forgotten_password_is_reset_by_email(client, bob):
    bob.email = "bob@example.com"
    bob.save()
    sent = client.post(reverse("password_reset"), {"email": "bob@example.com"})
    assert sent.status_code == 302 and sent["Location"] == reverse("password_reset_done")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["bob@example.com"]
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)  # Django moves the token into the session, then shows the form
    assert b"Choose a new password" in form.content
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "a-new-long-phrase-42",
                                                    "new_password2": "a-new-long-phrase-42"})
    assert done.status_code == 302 and done["Location"] == reverse("password_reset_complete")
    bob.refresh_from_db()
    assert bob.check_password("a-new-long-phrase-42")
    # The link works once.
    again = client.get(link, follow=True)
    assert b"This link no longer works" in again.content


def test_an_unknown_address_gets_the_same_answer_and_no_mail(client, bob):
    sent = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert sent.status_code == 302 and sent["Location"] == reverse("password_reset_done")
    assert mail.outbox == []


# -- schema and inference key --------------------------------------------------------------------------


def test_the_api_schema_is_for_signed_in_users(client, bob):
    anonymous = client.get(reverse("api:schema"))
    assert anonymous.status_code in (401, 403) and "detail" in anonymous.json()
    client.force_login(bob)
    assert client.get(reverse("api:schema")).status_code == 200


def test_the_inference_secret_never_falls_back_to_the_development_key_outside_debug():
    from lightbulb_site.settings import INSECURE_DEV_KEY, inference_secret

    assert inference_secret(explicit="", secret_key=INSECURE_DEV_KEY, debug=False) == ""
    assert inference_secret(explicit="", secret_key=INSECURE_DEV_KEY, debug=True) == INSECURE_DEV_KEY
    assert inference_secret(explicit="", secret_key="a-real-secret", debug=False) == "a-real-secret"
    assert inference_secret(explicit="own", secret_key=INSECURE_DEV_KEY, debug=False) == "own"


def test_without_a_secret_the_worker_refuses_to_start_and_score_says_why(settings):
    from django.core.management import CommandError, call_command

    from modeling.inference.protocol import InferenceUnavailable
    from modeling.serving import inference_key

    settings.LIGHTBULB_INFERENCE_SECRET = ""
    with pytest.raises(CommandError, match="never derived from the public development SECRET_KEY"):
        call_command("inference_worker", "--no-warm", "--address", "127.0.0.1:0")
    with pytest.raises(InferenceUnavailable, match="inference worker's key is not set"):
        inference_key()


def test_the_test_run_itself_does_not_key_the_worker_with_the_development_key(settings):
    from lightbulb_site.settings import INSECURE_DEV_KEY
    from modeling.inference.protocol import derive_key
    from modeling.serving import inference_key

    assert settings.DEBUG is False and settings.SECRET_KEY == INSECURE_DEV_KEY
    assert inference_key() != derive_key(INSECURE_DEV_KEY)


def _manage_check(extra: dict[str, str]) -> subprocess.CompletedProcess:
    """`manage.py check` as a person runs the README's commands: no DEBUG, no SECRET_KEY."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "LIGHTBULB_DATA_ROOT": os.environ["LIGHTBULB_DATA_ROOT"], **extra}
    return subprocess.run([sys.executable, str(REPO / "manage.py"), "check"], env=env, capture_output=True,
                          text=True, timeout=120)


def test_local_commands_run_on_the_key_make_writes_and_nothing_weaker(tmp_path):
    made = subprocess.run(["make", "-s", "-C", str(tmp_path), "-f", str(REPO / "Makefile"), "var/secret_key"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_text()) >= 50
    first = key_file.read_text()
    subprocess.run(["make", "-s", "-C", str(tmp_path), "-f", str(REPO / "Makefile"), "var/secret_key"], check=True,
                   timeout=60)
    assert key_file.read_text() == first  # never replaced: sessions and reset links stay valid
    assert _manage_check({"LIGHTBULB_SECRET_KEY_FILE": str(key_file)}).returncode == 0
    key_file.chmod(0o644)
    readable = _manage_check({"LIGHTBULB_SECRET_KEY_FILE": str(key_file)})
    assert readable.returncode != 0 and "can be read by other users" in readable.stderr
    missing = _manage_check({"LIGHTBULB_SECRET_KEY_FILE": str(tmp_path / "none")})
    assert missing.returncode != 0 and "SECRET_KEY must be set" in missing.stderr and "make run" in missing.stderr
