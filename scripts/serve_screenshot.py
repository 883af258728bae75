"""The README's screenshot of `awesearch serve`: a search on an index, the first hit played, as a PNG.

    python -m awesearch.example ./example && awesearch index ./example --index ./example/.awesearch
    python scripts/serve_screenshot.py --index ./example/.awesearch --query prince --out docs/serve.png

Needs chromium and chromium-driver (scripts/install_test_deps.sh) and selenium (the dev extra).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PLAY_S = 0.6  # seconds of playback before the picture, so the player shows progress


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="index directory")
    parser.add_argument("--query", default="prince", help="text query")
    parser.add_argument("--k", type=int, default=8, help="hits")
    parser.add_argument("--out", default="docs/serve.png", help="PNG path")
    args = parser.parse_args()

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from awesearch.web.app import LOOPBACK_HOSTS, create_app, open_archive
    from awesearch.web.headless import chromium, serving

    archive = open_archive(args.index)
    with serving(create_app(archive, LOOPBACK_HOSTS)) as base, chromium() as driver:
        driver.get(f"{base}/?q={args.query}&k={args.k}")
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".hit"))
        time.sleep(1.0)  # the waveforms
        driver.find_element(By.CSS_SELECTOR, ".hit .play").click()
        time.sleep(PLAY_S)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
