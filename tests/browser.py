"""Serve the rendered book on loopback and read its pages through headless Chromium."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# Flags that keep Chromium off the network: this machine reaches no outside host.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--hide-scrollbars",
]


def chromium_binary() -> str:
    """Return the Chromium executable, or skip (fail when NEGSAMP_REQUIRE_BROWSER=1) if there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = "no Chromium found; install Debian's chromium package (make test does so where apt-get runs as root)"
    if os.environ.get("NEGSAMP_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the name is fixed by the base class
        pass


@contextmanager
def serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 at a free port and yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def rendered_dom(binary: str, url: str, profile_dir: Path, screenshot: Path | None = None) -> str:
    """Return the page's DOM after its scripts ran (MathJax included); optionally save a screenshot."""
    common = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--virtual-time-budget=20000"]
    result = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed on {url}: {result.stderr[-2000:]}")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([*common, "--window-size=1280,2400", f"--screenshot={screenshot}", url],
                       capture_output=True, text=True, timeout=180, check=True)
    return result.stdout
