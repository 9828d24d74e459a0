"""The supervisors' review pages in a real browser (Playwright driving Debian's chromium)
against a real mosquitto and a real `tagwatch serve --http`: the access log (`#/access`)
shows a monitor's view of another team's subject flagged, live, without a reload; the
reports page (`#/reports`) shows a false alarm's rate and time to acknowledge and sorts by
the rate; a monitor is told both pages are not allowed and has no links to them.

Fixtures and helpers come from tests/test_console_browser.py (the same skip rules: no
chromium, skip, except under CI)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browserkit import Page, World, _add_user, _require_chromium, browser, serve_world
from tests.helpers import write_world
from tests.test_console_browser import Z2_AT, _walk_in, _zones

__all__ = ["browser"]  # a fixture, imported to be used here

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(240)]

# S1 (zone Z1) is north's, S2 (circle zone Z2) is south's
SUBJECTS = (
    '[[subjects]]\nid = "S1"\ntags = ["T1"]\nrisk = 3\nteam = "north"\n'
    '[[subjects]]\nid = "S2"\ntags = ["T2"]\nrisk = 2\nteam = "south"\n'
)


@pytest.fixture
def teams(mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The browser tests' world with two teams: alice monitors north, carol south, sue
    supervises."""
    _require_chromium()  # before starting anything
    zones, subjects = write_world(tmp_path, _zones(), SUBJECTS)
    db = tmp_path / "tw.db"
    _add_user(monkeypatch, db, "alice", "monitor", "north")
    _add_user(monkeypatch, db, "carol", "monitor", "south")
    _add_user(monkeypatch, db, "sue", "supervisor", "north")
    yield from serve_world(mosquitto.host, mosquitto.port, zones, subjects, db)


def test_a_view_of_another_teams_alert_shows_flagged_in_the_access_log_at_once(
    teams: World, browser: Any
) -> None:
    sup = Page(browser, teams.base).login("sue")
    mon = Page(browser, teams.base).login("alice")  # north; S2 is south's
    try:
        expect(sup.tid("nav-access")).to_be_visible()
        sup.tid("nav-access").click()
        expect(sup.tid("access-table")).to_be_visible()
        expect(sup.tid("access-row").first).to_be_visible()  # the logins at least
        expect(sup.page.locator("[data-testid=access-row].flagged")).to_have_count(0)
        expect(sup.tid("live-status")).to_have_text("live")
        sup.page.evaluate("() => { window.notReloaded = true; }")  # gone after a reload

        _, rec = _walk_in(teams, "T2", Z2_AT)
        mon.page.goto(f"/#/alert/{rec['id']}")
        expect(mon.tid("reason-form")).to_be_visible()
        mon.tid("reason-text").fill("south's monitor is off sick")
        mon.tid("reason-submit").click()
        expect(mon.tid("alert-title")).to_contain_text("zone breach · S2 · Z2")

        # the supervisor's page: the notice, and the row, without a reload
        expect(sup.tid("access-notice")).to_contain_text("alice opened an alert of S2")
        flagged = sup.page.locator("[data-testid=access-row].flagged")
        expect(flagged).to_have_count(1)
        assert sup.page.evaluate("() => window.notReloaded") is True
        row = sup.tid("access-row").first  # newest first
        expect(row).to_have_class("flagged")
        expect(row.get_by_test_id("access-flag")).to_have_text("flagged")
        expect(row.get_by_test_id("access-user")).to_have_text("alice")
        expect(row.get_by_test_id("access-action")).to_contain_text("another team's alert")
        expect(row.get_by_test_id("access-subject")).to_have_text("S2")
        expect(row.get_by_test_id("access-team")).to_have_text("south")
        expect(row.get_by_test_id("access-reason")).to_have_text("south's monitor is off sick")
        expect(row.get_by_test_id("access-client")).to_have_text("127.0.0.1")
        link = row.get_by_test_id("access-alert").get_by_role("link")
        expect(link).to_have_attribute("href", f"#/alert/{rec['id']}")

        # flagged only: that row alone (the logins and the supervisor's own view are not)
        sup.tid("access-flagged").check()
        expect(sup.tid("access-row")).to_have_count(1)
        expect(sup.tid("access-row")).to_have_class("flagged")
        sup.tid("access-flagged").uncheck()
        expect(sup.tid("access-row")).not_to_have_count(1)

        # a second look arrives live too, under the flagged filter
        sup.tid("access-flagged").check()
        expect(sup.tid("access-row")).to_have_count(1)
        mon.page.goto(f"/#/subject/{rec['subject']}")
        expect(mon.tid("subject-reason-form")).to_be_visible()
        mon.page.locator("#subject-reason-text").fill("checking the tag's battery")
        mon.page.locator("#subject-reason button").click()
        expect(mon.tid("subject-title")).to_contain_text("S2")
        expect(sup.tid("access-row")).to_have_count(2)
        expect(sup.tid("access-row").first.get_by_test_id("access-action")).to_contain_text(
            "another team's subject"
        )
        assert sup.page.evaluate("() => window.notReloaded") is True
        log = sup.ctx.request.get("/api/access").json()
        assert [r["seq"] for r in log] == sorted((r["seq"] for r in log), reverse=True)
        sup.tid("access-body").get_by_role(
            "link", name=rec["id"]
        ).click()  # the alert link opens the alert for the supervisor
        expect(sup.tid("alert-title")).to_contain_text("zone breach · S2 · Z2")
        assert sup.errors == [] and mon.errors == [], (sup.errors, mon.errors)
    finally:
        sup.close()
        mon.close()


def test_the_reports_page_shows_a_false_alarm_and_sorts_by_its_rate(
    teams: World, browser: Any
) -> None:
    _, north = _walk_in(teams)  # S1 in Z1, alice's team
    _, south = _walk_in(teams, "T2", Z2_AT)  # S2 in Z2, carol's
    mon = Page(browser, teams.base).login("alice")
    other = Page(browser, teams.base).login("carol")
    sup = Page(browser, teams.base).login("sue")
    try:
        sup.tid("nav-reports").click()
        expect(sup.tid("report-row")).to_have_count(2)
        expect(sup.tid("report-false-alarm-rate")).to_have_text(["—", "—"])  # none resolved

        mon.page.goto(f"/#/alert/{north['id']}")
        mon.tid("act-ack").click()
        expect(mon.tid("alert-workflow")).to_have_text("acknowledged")
        mon.tid("resolve-outcome").select_option("false_alarm")
        mon.tid("resolve-note").fill("tag strapped to a chair in the hall")
        mon.tid("act-resolve").click()
        expect(mon.tid("alert-workflow")).to_have_text("resolved")
        other.page.goto(f"/#/alert/{south['id']}")
        other.tid("resolve-outcome").select_option("breach")  # resolved without an ack
        other.tid("act-resolve").click()
        expect(other.tid("alert-workflow")).to_have_text("resolved")

        # the open page follows the actions (no reload), highest false alarm rate first
        s1 = sup.page.locator('[data-testid=report-row][data-subject="S1"]')
        expect(s1.get_by_test_id("report-false-alarm-rate")).to_have_text("100%")
        expect(s1.get_by_test_id("report-zone")).to_have_text("Z1")
        expect(s1.get_by_test_id("report-alerts")).to_have_text("1")
        expect(s1.get_by_test_id("report-resolved")).to_have_text("1")
        expect(s1.get_by_test_id("report-false_alarm")).to_have_text("1")
        expect(s1.get_by_test_id("report-breach")).to_have_text("0")
        expect(s1.get_by_test_id("report-time-to-ack")).to_have_text(
            re.compile(r"^\d+(\.\d)? min$")
        )
        s2 = sup.page.locator('[data-testid=report-row][data-subject="S2"]')
        expect(s2.get_by_test_id("report-false-alarm-rate")).to_have_text("0%")
        expect(s2.get_by_test_id("report-breach")).to_have_text("1")

        # the minutes are the server's median time to acknowledge
        got = {r["subject"]: r for r in sup.ctx.request.get("/api/reports/outcomes").json()}
        minutes = got["S1"]["median_time_to_ack_s"] / 60
        shown = s1.get_by_test_id("report-time-to-ack").text_content() or ""
        assert abs(float(shown.split()[0]) - minutes) <= 0.51, (shown, minutes)
        assert 1 < minutes < 20, minutes  # the walk-in's fixes were 10 min old

        subjects = sup.tid("report-subject")
        expect(sup.page.locator("th[aria-sort=descending]")).to_contain_text("False alarm rate")
        expect(subjects).to_have_text(["S1", "S2"])
        sup.tid("sort-false_alarm_rate").click()  # ascending
        expect(sup.page.locator("th[aria-sort=ascending]")).to_contain_text("False alarm rate")
        expect(subjects).to_have_text(["S2", "S1"])
        sup.tid("sort-false_alarm_rate").click()
        expect(subjects).to_have_text(["S1", "S2"])
        assert sup.errors == [] and mon.errors == [] and other.errors == []
    finally:
        for tab in (mon, other, sup):
            tab.close()


def test_a_monitor_is_not_allowed_the_review_pages(teams: World, browser: Any) -> None:
    mon = Page(browser, teams.base).login("alice")
    try:
        expect(mon.tid("nav-queue")).to_be_visible()
        expect(mon.tid("nav-access")).to_be_hidden()
        expect(mon.tid("nav-reports")).to_be_hidden()
        mon.page.goto("/#/access")
        expect(mon.tid("access-view")).to_be_visible()
        expect(mon.tid("access-status")).to_contain_text("Not allowed")
        expect(mon.tid("access-table")).to_be_hidden()
        mon.page.goto("/#/reports")
        expect(mon.tid("reports-status")).to_contain_text("Not allowed")
        expect(mon.tid("reports-table")).to_be_hidden()
        expect(mon.tid("access-view")).to_be_hidden()
        for path in ("/api/access", "/api/access?flagged=1", "/api/reports/outcomes"):
            assert mon.ctx.request.get(path).status == 403, path  # the server says so too
        assert mon.errors == [], mon.errors
    finally:
        mon.close()
