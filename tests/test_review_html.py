"""The HTML review in a real headless browser (Debian's chromium): it loads and shows every claim."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import escape as html_escape
from pathlib import Path

import pytest

from msrvirt.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("review")
    html = out / "review.html"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["review", "--no-live", "--html", str(html), "--json"]) == 0
    return html, json.loads(buf.getvalue())


def test_the_json_lists_every_claim_with_its_message_scopes_and_evidence(
        review: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    _, doc = review
    assert [c["number"] for c in doc["claims"]] == list(range(1, len(doc["claims"]) + 1))
    for claim in doc["claims"]:
        assert set(claim) >= {"id", "claim", "quote", "who", "date", "source", "message",
                              "verdict", "why", "scopes", "links", "evidence"}
        assert claim["verdict"] in ("holds", "partly", "fails", "undecided")
        assert all(s["verdict"] in ("holds", "fails", "undecided") for s in claim["scopes"])
        assert all(e["bearing"] in ("supports", "contradicts", "informs", "pending")
                   for e in claim["evidence"])
    by_id = {c["id"]: c for c in doc["claims"]}
    assert by_id["intercept-more-work"]["who"] == "Sean Christopherson"
    assert by_id["intercept-more-work"]["verdict"] == "fails"
    assert [s["verdict"] for s in by_id["rsps-per-task"]["scopes"]] == ["holds", "fails", "fails"]
    assert by_id["model-matches-kernel"]["verdict"] == "undecided"  # --no-live
    assert doc["conformance"] is None


def test_the_report_loads_in_chromium_and_shows_every_claim(
        review: tuple[Path, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    if CHROMIUM is None:
        if os.environ.get("MSRVIRT_REQUIRE_BROWSER"):
            pytest.fail("MSRVIRT_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("chromium is not installed (make test installs it where it runs as root)")
    html, doc = review
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=120, env=env, check=True)
    dom = proc.stdout
    assert 'data-loaded="yes"' in dom  # the inline script ran
    assert f'data-claims="{len(doc["claims"])}"' in dom
    for claim in doc["claims"]:
        assert f'id="{claim["id"]}"' in dom
        # The message each claim quotes: its words, who, when and its Message-ID.
        assert html_escape(claim["quote"], quote=False) in dom
        m = claim["message"]
        if m["message_id"]:
            assert html_escape(f"<{m['message_id']}>", quote=False) in dom and m["date"] in dom
    console_errors = [line for line in proc.stderr.splitlines()
                      if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line)]
    assert console_errors == []
    assert "data:image/png;base64," in dom  # the plot is embedded, nothing fetched
    # The only addresses are links (to the quoted messages' lore copies), never resources.
    text = html.read_text()
    assert "http://" not in text
    assert all(text[i - 6:i] == 'href="' for i in (m.start() for m in re.finditer("https://", text)))
