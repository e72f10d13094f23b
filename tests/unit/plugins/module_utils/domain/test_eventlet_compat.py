"""plugins/module_utils/domain/eventlet_compat.py: the compatibility table and check_versions()."""

import pytest

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain import eventlet_compat as compat
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.domain.eventlet_compat import check_versions

GOOD = {"gunicorn": "25.3.0", "eventlet": "0.41.3", "greenlet": "3.5.6", "dnspython": "2.9.2"}


def one(problems):
    assert len(problems) == 1, problems
    return problems[0]


def test_the_recommended_combination_has_no_problem():
    assert check_versions("3.11.7", GOOD) == []
    assert check_versions("3.12.1", dict(GOOD, greenlet="3.0.3")) == []


def test_gunicorn_25_refuses_the_runbooks_eventlet():
    p = one(check_versions("3.11.7", dict(GOOD, eventlet="0.33.3")))
    assert (p["package"], p["version"], p["pin"], p["severity"]) == ("eventlet", "0.33.3", "eventlet>=0.40.3", "fail")
    assert p["error"] == "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher"
    assert p["reason"] == "gunicorn 25.3.0 needs eventlet >= 0.40.3"
    assert any(s.startswith("docs/facts.md") for s in p["sources"])


def test_gunicorn_24_behaves_like_25():
    assert one(check_versions("3.11.7", dict(GOOD, gunicorn="24.1.1", eventlet="0.40.2")))["pin"] == "eventlet>=0.40.3"
    assert check_versions("3.11.7", dict(GOOD, gunicorn="24.0.0", eventlet="0.40.3")) == []


@pytest.mark.parametrize("gunicorn", ["26.0.0", "27.0.1"])
def test_gunicorn_26_and_later_have_no_eventlet_worker(gunicorn):
    p = one(check_versions("3.11.7", dict(GOOD, gunicorn=gunicorn)))
    assert (p["package"], p["pin"]) == ("gunicorn", "gunicorn>=25,<26")
    assert "Entry point ('gunicorn.workers', 'eventlet') not found" in p["error"]
    assert p["error"].startswith("Error: class uri 'eventlet' invalid or not found:")
    assert any("pull/3623" in s for s in p["sources"])


def test_gunicorn_20_cannot_load_eventlet_0_30_3_and_later():
    p = check_versions("3.8.18", dict(GOOD, gunicorn="20.1.0", eventlet="0.31.0", greenlet="1.1.0"))
    p = one(p)
    assert p["package"] == "gunicorn"
    assert p["error"] == "ImportError: cannot import name 'ALREADY_HANDLED' from 'eventlet.wsgi'"
    assert p["pin"] == "gunicorn==23.0.0"   # gunicorn 24+ needs Python 3.10
    assert any("eventlet/issues/702" in s for s in p["sources"])
    assert check_versions("3.8.18", dict(GOOD, gunicorn="20.1.0", eventlet="0.30.2", greenlet="1.1.0")) == []


def test_eventlet_0_32_cannot_be_imported_on_python_3_10_and_later():
    found = check_versions("3.11.7", dict(GOOD, gunicorn="23.0.0", eventlet="0.32.0"))
    p = one(found)
    assert p["error"] == "TypeError: cannot set 'is_timeout' attribute of immutable type 'TimeoutError'"
    assert p["reason"] == "eventlet 0.32.0 cannot run on Python 3.11.7 (needs >= 0.33.0)"
    assert check_versions("3.9.18", dict(GOOD, gunicorn="23.0.0", eventlet="0.32.0", greenlet="3.0.3")) == []


@pytest.mark.parametrize("python, eventlet, error", [
    ("3.12.1", "0.33.3", "No module named 'distutils'"),
    ("3.13.0", "0.37.0", "start_joinable_thread"),
])
def test_eventlet_too_old_for_newer_pythons(python, eventlet, error):
    found = check_versions(python, dict(GOOD, gunicorn="23.0.0", eventlet=eventlet, greenlet="3.2.4"))
    assert error in one(found)["error"]


def test_known_bad_eventlet_0_36_0_names_its_upstream_issue():
    p = one(check_versions("3.11.7", dict(GOOD, gunicorn="23.0.0", eventlet="0.36.0")))
    assert "eventlet.set_idle" in p["error"]
    assert p["reason"] == "eventlet 0.36.0 is a known-bad release (fixed in 0.36.1)"
    assert any("eventlet/eventlet/issues/946" in s and "gunicorn/pull/3179" in s for s in p["sources"])
    assert check_versions("3.11.7", dict(GOOD, gunicorn="23.0.0", eventlet="0.36.1")) == []


def test_greenlet_against_python():
    leak = one(check_versions("3.11.7", dict(GOOD, greenlet="1.1.3")))
    assert (leak["package"], leak["severity"], leak["pin"]) == ("greenlet", "warn", "greenlet>=3.0.3")
    too_old = one(check_versions("3.12.1", dict(GOOD, greenlet="2.0.2")))
    assert too_old["severity"] == "fail" and "predates Python 3.12 support" in too_old["error"]
    missing = one(check_versions("3.11.7", dict(GOOD, greenlet=None)))
    assert missing["error"] == "ModuleNotFoundError: No module named 'greenlet'"


def test_eventlet_missing_under_an_eventlet_worker():
    p = one(check_versions("3.11.7", dict(GOOD, eventlet=None, greenlet=None)))
    assert p["version"] is None and p["error"] == "RuntimeError: eventlet worker requires eventlet 0.40.3 or higher"


@pytest.mark.parametrize("python, pins", [
    ("3.11.7", ["gunicorn>=25,<26", "eventlet>=0.40.3", "greenlet>=3.0.3"]),
    ("3.13.0", ["gunicorn>=25,<26", "eventlet>=0.40.3", "greenlet>=3.1.1"]),
    ("3.14.0", ["gunicorn>=25,<26", "eventlet>=0.41.0", "greenlet>=3.2.4"]),
    ("3.9.18", ["gunicorn==23.0.0", "eventlet>=0.40.3,<0.41", "greenlet>=3.0.3"]),
])
def test_recommended_pins_per_python(python, pins):
    assert compat.recommended_pins(python) == pins


def test_pip_command_is_exact():
    assert compat.pip_command("/srv/app/.venv/bin/python", "3.11.2") == (
        "/srv/app/.venv/bin/python -m pip install 'gunicorn>=25,<26' 'eventlet>=0.40.3' 'greenlet>=3.0.3'")


@pytest.mark.parametrize("value, problem", [
    ("selects", None), ("poll", None), ("epolls", None), ("asyncio", None), ("mypkg.hub:Hub", None), (None, None),
    ("select", "No module named 'eventlet.hubs.select' (the hubs are selects, poll, epolls, kqueue, asyncio)"),
    ("epoll", "No module named 'eventlet.hubs.epoll' (the hubs are selects, poll, epolls, kqueue, asyncio)"),
    ("", 'EVENTLET_HUB is empty: eventlet raises "RuntimeError: Need to specify a hub"'),
])
def test_hub_values(value, problem):
    assert compat.hub_problem(value) == problem


def test_hub_checked_against_the_installed_eventlet_and_the_platform():
    old = ["epolls", "hub", "kqueue", "poll", "pyevent", "selects", "timer"]   # eventlet 0.33.3: no asyncio hub
    assert "in the installed eventlet" in compat.hub_problem("asyncio", available=old)
    assert "needs select.kqueue" in compat.hub_problem("kqueue", platform_select=["epoll", "poll"])
    assert compat.hub_problem("epolls", available=old, platform_select=["epoll", "poll"]) is None


@pytest.mark.parametrize("value, off", [("yes", True), ("YES", True), (" yes ", True), ("1", False), ("true", False),
                                        (None, False)])
def test_only_yes_turns_green_dns_off(value, off):
    assert compat.greendns_off(value) is off


def test_every_row_names_known_sources():
    rows = list(compat.GUNICORN_ROWS) + list(compat.EVENTLET_FOR_PYTHON) + list(compat.KNOWN_BAD)
    for row in rows:
        assert row["sources"] and all(s in compat.SOURCES for s in row["sources"])
    assert compat.deprecation_notice("25.3.0").startswith("[WARNING] The eventlet worker is DEPRECATED")
    assert compat.deprecation_notice("23.0.0") is None


@pytest.mark.parametrize("text, parsed", [("25.3.0", (25, 3, 0)), ("1.1.3.post0", (1, 1, 3)), ("3.0.0rc1", (3, 0, 0)),
                                          ("0.36.0", (0, 36, 0)), (None, None), ("dev", None)])
def test_version_tuple(text, parsed):
    assert compat.version_tuple(text) == parsed
