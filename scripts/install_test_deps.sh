#!/usr/bin/env bash
# Debian packages for the browser test (tests/test_web_e2e.py): chromium and chromium-driver.
# Called by .ci/run and by the README's test command. It never fails the run: where the packages cannot be
# installed (no apt-get, not root and no sudo, no network) it says so and the browser test skips with the reason.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "install_test_deps: chromium and chromedriver are installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_test_deps: WARNING: no apt-get here; install chromium and its chromedriver by hand, or the browser test is skipped"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_test_deps: WARNING: not root: run 'sudo apt-get install chromium chromium-driver', or the browser test is skipped"
        exit 0
    fi
fi
echo "install_test_deps: apt-get install chromium chromium-driver fonts-dejavu-core (about 100 MB, once)"
if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null; then
    echo "install_test_deps: done"
else
    echo "install_test_deps: WARNING: apt-get failed; the browser test will be skipped"
fi
exit 0
