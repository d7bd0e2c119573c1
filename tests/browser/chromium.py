"""Locate (or, as root on Debian/Ubuntu, install) headless Chromium and its driver.

The browser test needs the Debian packages ``chromium`` and ``chromium-driver`` (the driver
matches the browser's version exactly). On a clean CI machine :func:`ensure_chromium` runs
``apt-get install -y chromium chromium-driver`` when they are missing and we are root;
otherwise it raises :class:`ChromiumUnavailable` with the reason (the test then FAILS with it).
"""
from __future__ import annotations

import os
import shutil
import subprocess

CHROMIUM = os.environ.get("STUDIO_AL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STUDIO_AL_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,2200"]


class ChromiumUnavailable(RuntimeError):
    pass


def _present() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


def ensure_chromium(timeout: float = 900.0) -> tuple[str, str]:
    """``(chromium, chromedriver)`` paths, installing the Debian packages if needed."""
    if _present():
        return CHROMIUM, CHROMEDRIVER
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ChromiumUnavailable(
            f"{CHROMIUM} / {CHROMEDRIVER} missing and cannot install them here (need root and "
            "apt-get): run `apt-get install -y chromium chromium-driver`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ChromiumUnavailable(f"`{' '.join(cmd)}` took more than {timeout:.0f}s") from None
        if proc.returncode != 0:
            raise ChromiumUnavailable(f"`{' '.join(cmd)}` failed ({proc.returncode}): "
                                      f"{(proc.stderr or proc.stdout)[-800:]}")
    if not _present():
        raise ChromiumUnavailable(f"installed chromium-driver but {CHROMIUM} / {CHROMEDRIVER} "
                                  "still missing")
    return CHROMIUM, CHROMEDRIVER


def make_driver(user_data_dir: str):
    """A headless Chrome WebDriver (selenium) on the system Chromium, fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, driver = ensure_chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in FLAGS + [f"--user-data-dir={user_data_dir}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)
