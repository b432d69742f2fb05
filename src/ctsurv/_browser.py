"""Open a local HTML file in headless Chromium and report what the browser saw (optional).

Used by ``ctsurv report --screenshot`` and by ``tests/test_browser.py``. Needs the optional
``playwright`` package (the ``test`` extra) and a Chromium executable: Debian's ``chromium``
package (``/usr/bin/chromium``; ``scripts/test.sh`` installs it when missing) or a path given
as ``executable``. Playwright's own browser download is never used (no network at run time).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ctsurv.exceptions import CtsurvError

__all__ = ["find_chromium", "open_in_chromium"]

#: executable names of Chromium on Debian and elsewhere, tried in order
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def open_in_chromium(html: str | Path, *, screenshot: str | Path | None = None,
                     width: int = 1200, height: int = 900, full_page: bool = True,
                     executable: str | None = None, element_ids=()) -> dict:
    """Load ``html`` (a local file) in headless Chromium, wait for it, and return what happened.

    Returns a dict: ``console`` (list of ``(type, text)`` console messages), ``page_errors``
    (uncaught script errors), ``requests`` (every URL the page requested, the page itself
    included), ``failed_requests``, ``images`` (count) and ``images_broken`` (images that did
    not decode), ``text`` (the body's visible text), ``ids`` (visible text of each element id in
    ``element_ids``; None for an absent one) and ``screenshot`` (the PNG path, when asked: the
    whole page, or with ``full_page=False`` the first ``width`` x ``height`` pixels).

    Raises
    ------
    CtsurvError
        playwright is not installed, no Chromium is found, or the browser cannot start (the
        message says which and what to install).
    """
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise CtsurvError("opening a report in a browser needs the optional playwright package "
                          "(pip install playwright, or the project's test extra)") from exc
    exe = executable or find_chromium()
    if not exe:
        raise CtsurvError("no Chromium found on PATH (Debian: apt-get install chromium)")
    path = Path(html).resolve()
    if not path.is_file():
        raise CtsurvError(f"{path}: no such HTML file")
    seen: dict = {"console": [], "page_errors": [], "requests": [], "failed_requests": []}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": int(width), "height": int(height)})
                page.on("console", lambda m: seen["console"].append((m.type, m.text)))
                page.on("pageerror", lambda e: seen["page_errors"].append(str(e)))
                page.on("request", lambda r: seen["requests"].append(r.url))
                page.on("requestfailed", lambda r: seen["failed_requests"].append(r.url))
                page.goto(path.as_uri(), wait_until="load")
                seen["images"] = page.evaluate("document.images.length")
                seen["images_broken"] = page.evaluate(
                    "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
                seen["text"] = page.inner_text("body")
                seen["ids"] = {i: (page.inner_text(f"#{i}") if page.query_selector(f"#{i}") else None)
                               for i in element_ids}
                if screenshot is not None:
                    Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshot), full_page=bool(full_page))
                    seen["screenshot"] = str(screenshot)
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise CtsurvError(f"Chromium ({exe}) could not open {path}: {exc}") from exc
    return seen
