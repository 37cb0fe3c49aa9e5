"""The review page in a real browser: Debian's headless Chromium driven by Playwright, against a
real uvicorn server with the real model and index. Skipped, with the reason, where Chromium or
Playwright is missing (`bash scripts/test.sh` installs both where it can), except in CI, where
``TWIN_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns a missing browser into a failure (the
``browser`` fixture is in conftest.py)."""

from __future__ import annotations

import os
import re

import httpx
import pytest

from retrieval.retriever import Item, Retriever

from .test_http import running

try:
    from playwright.sync_api import expect
except ImportError:
    if os.environ.get("TWIN_REQUIRE_BROWSER") == "1":
        raise
    pytest.skip("playwright is not installed (the dev extra has it)", allow_module_level=True)

KEY = "k3y"
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> Is this <b>bold</b>?'


@pytest.fixture
def served(index_copy):
    with Retriever.open(index_copy) as retriever:  # a stored text that is HTML, and a payload that is too
        retriever.upsert([Item("hostile", HOSTILE, {"note": "<script>window.pwned = 3</script>"})])
    with running(index_copy, api_key=KEY) as base:
        yield base


def open_page(browser, url: str, width: int = 1280, height: int = 800):  # noqa: ANN201 - Page
    """A fresh page on ``url`` whose console errors and uncaught exceptions are collected."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.problems = []
    page.on("console", lambda m: page.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.problems.append(f"uncaught: {e}"))
    page.goto(url)
    expect(page.locator("#facts")).to_contain_text("tau")
    return page


def search(page, text: str) -> None:  # noqa: ANN001 - Page
    page.get_by_label("Query", exact=True).fill(text)
    page.keyboard.press("Enter")
    page.wait_for_selector("#results li")


def test_search_judge_reload_and_the_verdict_is_still_there(browser, served, tmp_path):
    page = open_page(browser, served)
    page.get_by_label("API key").fill(KEY)
    page.get_by_label("API key").dispatch_event("change")
    search(page, "I forgot my password")
    first = page.locator("#results li").first
    item_id = first.locator(".item-id").inner_text()
    assert "cosine" in first.inner_text() and first.locator(".score-bar .tau").count() == 1
    first.get_by_role("button", name="Not duplicate").click()
    expect(page.locator("#results li .said").first).to_have_text(re.compile("^saved"))
    with httpx.Client(base_url=served) as http:  # stored on the server, as the page says
        stored = http.get("/feedback", params={"query": "I forgot my password"}).json()["verdicts"]
    assert [(v["b_id"], v["duplicate"]) for v in stored] == [(item_id, False)]

    page.reload()
    expect(page.locator("#facts")).to_contain_text("tau")
    search(page, "I forgot my password")
    again = page.locator("#results li").first
    assert again.get_by_role("button", name="Not duplicate").get_attribute("aria-pressed") == "true"
    assert again.get_by_role("button", name="Duplicate", exact=True).get_attribute("aria-pressed") == "false"
    assert "saved: not duplicate" in again.inner_text()
    page.screenshot(path=tmp_path / "desktop.png")
    assert page.problems == []


def test_without_the_key_a_verdict_is_refused_and_nothing_stored(browser, served):
    page = open_page(browser, served)
    search(page, "How do I reset my password?")
    duplicate = page.locator("#results li").first.get_by_role("button", name="Duplicate", exact=True)
    duplicate.click()  # no key entered: the page asks for it and sends nothing
    expect(page.locator("#results li .said").first).to_contain_text("API key")
    assert page.evaluate("document.activeElement.id") == "api-key"  # the page takes you to the key
    page.get_by_label("API key").fill("wrong")
    duplicate.click()  # a wrong key: the server's 401, shown in words
    expect(page.locator("#results li .said").first).to_contain_text("missing or wrong API key")
    with httpx.Client(base_url=served) as http:
        assert http.get("/feedback").json()["counts"] == {"duplicate": 0, "not_duplicate": 0}
    # Chromium itself logs every 4xx answer to a fetch; nothing else may reach the console.
    assert [p for p in page.problems if "status of 401" not in p] == []
    assert duplicate.get_attribute("aria-pressed") == "false"


def test_html_in_texts_and_payloads_is_shown_as_text(browser, served):
    page = open_page(browser, served)
    search(page, HOSTILE)
    hostile = page.locator("#results li", has=page.locator("code", has_text="hostile"))
    assert HOSTILE in hostile.locator(".text").inner_text()
    hostile.locator("summary").click()
    assert "<script>window.pwned = 3</script>" in hostile.locator("pre").inner_text()
    assert page.evaluate("window.pwned") is None
    assert page.locator("#results script, #results img, #results b").count() == 0
    assert page.problems == []


def test_keyboard_alone_searches_and_judges(browser, served):
    page = open_page(browser, served)
    page.get_by_label("API key").fill(KEY)
    page.get_by_label("API key").dispatch_event("change")
    page.locator("body").focus()
    for _ in range(10):  # Tab to the query box, type, Enter
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "query":
            break
    assert page.evaluate("document.activeElement.id") == "query"
    page.keyboard.type("Where are you from?")
    page.keyboard.press("Enter")
    page.wait_for_selector("#results li")
    for _ in range(20):  # Tab on to the first verdict button, Space presses it
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Duplicate":
            break
    page.keyboard.press("Space")
    expect(page.locator("#results li .said").first).to_have_text(re.compile("^saved"))
    assert page.locator("#results li").first.get_by_role("button", name="Duplicate", exact=True) \
        .get_attribute("aria-pressed") == "true"
    page.locator("#tab-search").focus()  # arrow keys move between the tabs
    page.keyboard.press("ArrowRight")
    assert page.locator("#view-groups").is_visible() and page.evaluate("document.activeElement.id") == "tab-groups"
    assert page.problems == []


def test_tau_view_recalibrates_and_writes_tau_on_a_phone(browser, served, tmp_path):
    with httpx.Client(base_url=served, timeout=60) as http:
        from .test_review import _seed_over_http

        _seed_over_http(http, {"Authorization": f"Bearer {KEY}"})
    page = open_page(browser, served, 390, 844)
    page.get_by_label("API key").fill(KEY)
    page.get_by_label("API key").dispatch_event("change")
    page.get_by_role("tab", name="Tau").click()
    expect(page.locator("#verdict-counts")).to_contain_text("not duplicate")
    page.get_by_label("Objective").select_option("f1")
    page.get_by_role("button", name="Re-calibrate tau from the verdicts").click()
    page.wait_for_selector("#tau-result:not([hidden])")
    assert page.evaluate("document.getElementById('tau-plot').complete && "
                         "document.getElementById('tau-plot').naturalWidth > 0")
    new_tau = page.locator("#tau-rows tr").first.locator("td").last.inner_text()
    page.get_by_role("button", name=f"Write tau {new_tau} to the index").click()
    expect(page.locator("#facts")).to_contain_text(f"tau {new_tau}")
    with httpx.Client(base_url=served) as http:
        assert f"{http.get('/stats').json()['tau']:.4f}" == new_tau
    page.get_by_role("tab", name="Groups").click()
    page.get_by_role("button", name="Compute groups from the index").click()
    page.wait_for_selector("#groups section")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390  # nothing wider than the phone
    page.screenshot(path=tmp_path / "phone.png")
    assert page.problems == []


def test_every_control_has_a_label(browser, served):
    page = open_page(browser, served)
    search(page, "How old are you?")
    page.get_by_role("tab", name="Groups").click()
    page.get_by_role("button", name="Compute groups from the index").click()
    page.wait_for_selector("#groups section")
    unnamed = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute('aria-label') && !c.textContent.trim())
        .map((c) => c.outerHTML)""")
    assert unnamed == []
    groups = page.locator("#groups [role=group]")
    assert groups.count() > 0 and groups.first.get_attribute("aria-label").startswith("Your verdict on ")
    assert page.problems == []
