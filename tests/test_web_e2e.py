"""The page in a real headless Chromium (Debian chromium + chromium-driver, driven by selenium).

Opens /?q=... on the generated index, checks the listed hits are the engine's, presses play on one and checks
that the audio element plays that hit (0.5 s either side) and stops after it. Skips, saying why, when
Chromium or its driver is not installed (scripts/install_test_deps.sh installs them).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from awesearch.web.headless import missing_browser

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_browser() is not None, reason=f"no headless browser: {missing_browser()}"),
]
WAIT_S = 20.0  # seconds for the page to show results


def wait_for(predicate, timeout: float = WAIT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_deep_link_lists_the_hits_and_play_plays_the_hit(web_archive, tmp_path):
    from selenium.webdriver.common.by import By

    from awesearch.search import format_time
    from awesearch.web.app import LOOPBACK_HOSTS, create_app, open_archive
    from awesearch.web.headless import chromium, serving

    archive = open_archive(web_archive[1])
    expected = archive.engine.search(text="seven apples", k=6)
    with serving(create_app(archive, LOOPBACK_HOSTS)) as base, chromium() as driver:
        driver.get(f"{base}/?q=seven+apples&k=6")
        rows = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".hit"), what="hits on the page")
        listed = [(r.find_element(By.CSS_SELECTOR, ".file").text, r.find_element(By.CSS_SELECTOR, ".time").text) for r in rows]
        assert listed == [(Path(h.path).name, f"{format_time(h.start)}–{format_time(h.end)}") for h in expected]
        assert driver.find_element(By.ID, "q").get_attribute("value") == "seven apples"
        assert "6 hits" in driver.find_element(By.ID, "status").text

        # play the second hit: the player loads its recording, starts 0.5 s before it and stops 0.5 s after it
        hit = expected[1]
        rows[1].find_element(By.CSS_SELECTOR, ".play").click()
        state = "const a = document.getElementById('audio'); return [a.currentTime, a.paused, a.src, a.error && a.error.code];"
        first = wait_for(lambda: (s := driver.execute_script(state)) and not s[1] and s[0] > 0 and s, what="playback to start")
        assert first[2].endswith(f"/api/audio/{archive.ids[hit.path]}") and first[3] is None
        later = wait_for(lambda: (s := driver.execute_script(state)) and s[0] > first[0] + 0.2 and s, what="currentTime to advance")
        assert hit.start - 0.5 - 0.05 <= first[0] < later[0]
        stopped = wait_for(lambda: (s := driver.execute_script(state)) and s[1] and s, timeout=hit.end - hit.start + 5, what="the hit to end")
        # pauses at the first timeupdate (every 250 ms or so) past the hit + 0.5 s, or at the end of the recording
        stop_at = min(hit.end + 0.5, driver.execute_script("return document.getElementById('audio').duration"))
        assert stop_at - 0.05 <= stopped[0] <= stop_at + 0.6, (stopped, hit, stop_at)
        assert driver.find_element(By.ID, "player-name").text == Path(hit.path).name
        assert driver.find_elements(By.CSS_SELECTOR, "#timeline .mark")  # the hits of that recording on its timeline

        # keys: k moves up to the first hit, Enter opens its recording in the player
        from selenium.webdriver.common.keys import Keys

        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys("k")
        assert "selected" in rows[0].get_attribute("class") and "selected" not in rows[1].get_attribute("class")
        body.send_keys(Keys.ENTER)
        top = expected[0]

        def at_first_hit():
            t, paused, src, _ = driver.execute_script(state)
            return src.endswith(f"/api/audio/{archive.ids[top.path]}") and not paused and top.start - 0.55 <= t <= top.end + 0.5

        wait_for(at_first_hit, what="Enter to play the first hit's recording from the hit")
        assert driver.find_element(By.ID, "player-name").text == Path(expected[0].path).name
        driver.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 10_000
