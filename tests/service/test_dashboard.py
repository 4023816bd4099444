"""The dashboard as the server delivers it: the page, its assets, and the rules its code
follows (no inline script, no HTML built from strings, no CDN, no token in a URL)."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "service" / "static"
OWN_JS = sorted((STATIC / "dashboard").glob("*.js"))


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_text += data.strip()


@pytest.fixture
def page(client):
    resp = client.get("/")
    assert resp.status_code == 200
    parsed = _Tags()
    parsed.feed(resp.get_data(as_text=True))
    return resp, parsed


def test_the_page_is_served_without_a_token_under_a_strict_csp(page, client):
    resp, _ = page
    assert resp.mimetype == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.headers["Cache-Control"] == "no-cache"
    # The API behind it still wants the token.
    assert client.get("/v1/jobs").status_code == 401


def test_every_script_is_a_file_and_no_tag_has_an_inline_handler(page):
    _, parsed = page
    scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
    assert scripts and all(attrs.get("src", "").startswith("/assets/") for attrs in scripts)
    assert parsed.script_text == ""
    for tag, attrs in parsed.tags:
        assert not any(name.startswith("on") or name == "style" for name in attrs), tag


def test_every_referenced_asset_and_module_import_is_served(page, client):
    _, parsed = page
    urls = [attrs.get("src") or attrs.get("href") for tag, attrs in parsed.tags
            if tag in ("script", "link")]
    for path in OWN_JS:
        urls += [f"/assets/dashboard/{name}" for name in
                 re.findall(r'from "\./([\w.]+\.js)"', path.read_text())]
    assert len(set(urls)) >= len(OWN_JS) + 3
    for url in set(urls):
        resp = client.get(url)
        assert resp.status_code == 200, url
        if url.endswith(".js"):
            assert resp.mimetype in ("text/javascript", "application/javascript"), url


@pytest.mark.parametrize("path", OWN_JS, ids=lambda p: p.name)
def test_scripts_never_build_html_from_strings_nor_call_out(path):
    raw = path.read_text()
    assert not re.search(r"https?://", raw), f"{path.name} loads from another origin"
    source = re.sub(r"//[^\n]*|/\*.*?\*/", "", raw, flags=re.DOTALL)  # code, not comments
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                   "eval(", "new Function", "EventSource", "localStorage",
                   "setAttribute(\"style\""):
        assert banned not in source, f"{path.name} uses {banned}"
    # The token travels only in the Authorization header, never in a URL.
    assert not re.search(r"[?&](token|access_token)=", source)


def test_the_vendored_chart_library_carries_its_license_and_version():
    vendor = STATIC / "vendor" / "uplot"
    assert "MIT" in (vendor / "LICENSE").read_text()
    banner = (vendor / "uPlot.iife.min.js").read_text()[:80]
    assert "(v1.6.32)" in banner
    docs = (STATIC.parents[1] / "docs" / "dashboard.md").read_text()
    assert "uplot@1.6.32" in docs


def test_unknown_assets_are_404_in_the_error_envelope(client):
    resp = client.get("/assets/dashboard/missing.js")
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"
