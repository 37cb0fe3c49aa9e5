"""The README's figures of the review page, made the same way every time: index the demo corpus,
serve it with `twin serve`, give verdicts as the demo's labels say (its ``group`` column), and
photograph the page in Debian's headless Chromium at 1280x800 (desktop) and 390x844 (phone).

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Needs the browser extra (`pip install -e ".[browser]"`) and /usr/bin/chromium (scripts/browser.sh).
The PNGs are reduced to 64 colours to stay small.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "retrieval" / "demo" / "faq.csv"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", "--force-color-profile=srgb"]
QUERY = "I forgot my password, what now?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="Folder for the PNGs.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        twin = [sys.executable, "-m", "retrieval.cli"]
        subprocess.run([*twin, "build", str(DEMO), "--index", str(index)], check=True, stderr=subprocess.DEVNULL)
        groups = Path(tmp) / "groups.csv"
        subprocess.run([*twin, "groups", str(DEMO), "--index", str(index), "-o", str(groups)], check=True,
                       stderr=subprocess.DEVNULL)
        port = _free_port()
        server = subprocess.Popen([*twin, "serve", "--index", str(index), "--port", str(port), "--groups",
                                   str(groups)], stderr=subprocess.DEVNULL, env={**os.environ, "TWIN_API_KEY": ""})
        try:
            base = f"http://127.0.0.1:{port}"
            _wait(base)
            _give_verdicts(base)
            _photograph(base, args.out)
        finally:
            server.terminate()
            server.wait(30)
    for path in sorted(args.out.glob("*.png")):
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {path.stat().st_size:,} bytes")


def _photograph(base: str, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for name, width, height in (("desktop", 1280, 800), ("phone", 390, 844)):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(base)
            expect(page.locator("#facts")).to_contain_text("tau")
            page.get_by_label("Query", exact=True).fill(QUERY)
            page.keyboard.press("Enter")
            page.wait_for_selector("#results li")
            page.locator("#results li").nth(1).get_by_role("button", name="Not duplicate").click()
            expect(page.locator("#results li").nth(1).locator(".said")).to_contain_text("saved")
            page.locator("#query").blur()
            _save(page, out / f"search-{name}.png")
            page.get_by_role("tab", name="Groups").click()
            page.wait_for_selector("#groups section")
            _save(page, out / f"groups-{name}.png")
            page.get_by_role("tab", name="Tau").click()
            page.get_by_role("button", name="Re-calibrate tau from the verdicts").click()
            page.wait_for_selector("#tau-result:not([hidden])")
            page.locator("#tau-plot").scroll_into_view_if_needed()
            _save(page, out / f"tau-{name}.png")
            page.close()
        browser.close()


def _save(page, path: Path) -> None:  # noqa: ANN001 - Page
    """A screenshot of the viewport, reduced to 64 colours."""
    page.screenshot(path=path)
    with Image.open(path) as image:
        image.convert("RGB").quantize(64, dither=Image.Dither.NONE).save(path, optimize=True)


def _give_verdicts(base: str) -> None:
    """Each of the first 60 demo items against its 3 nearest others, judged by the demo's groups."""
    with httpx.Client(base_url=base, timeout=60) as http:
        for n in range(1, 61):
            item = http.get(f"/items/faq-{n:03d}").json()
            found = http.post("/search", json={"texts": [item["text"]], "k": 4}).json()["results"][0]["matches"]
            for match in found:
                if match["id"] != item["id"]:
                    http.post("/feedback", json={"query_id": item["id"], "id": match["id"], "duplicate":
                                                 match["payload"]["group"] == item["payload"]["group"]})


def _wait(base: str) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("twin serve did not become ready")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
