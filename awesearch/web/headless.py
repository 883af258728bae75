"""Driving the page in a real headless Chromium: the end-to-end test and the README screenshot use this.

Needs Debian's `chromium` and `chromium-driver` (scripts/install_test_deps.sh) and the `selenium` package
(the dev extra). The server runs in a thread of this process on a free loopback port.
"""

from __future__ import annotations

import shutil
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from awesearch.errors import AwesearchError

CHROMIUM = "chromium"
CHROMEDRIVER = "chromedriver"
SERVER_START_TIMEOUT_S = 20.0
WINDOW_SIZE = (1280, 760)  # pixels: the screenshot's size


def missing_browser() -> str | None:
    """Why a headless Chromium cannot be driven here, or None when it can."""
    for tool, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian package {package}: bash scripts/install_test_deps.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[dev]')"
    return None


@contextmanager
def serving(app) -> Iterator[str]:
    """Run the ASGI app on 127.0.0.1 on a free port in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AwesearchError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=SERVER_START_TIMEOUT_S)


@contextmanager
def chromium() -> Iterator["object"]:
    """A selenium WebDriver for headless system Chromium (muted; media may play without a user gesture)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = missing_browser()
    if reason:
        raise AwesearchError(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace sandbox
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
    ):
        options.add_argument(arg)
    # an explicit driver path: selenium never tries to download one
    driver = webdriver.Chrome(service=Service(shutil.which(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
