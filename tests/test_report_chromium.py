"""The report opened in headless Chromium: no console errors, charts drawn, a server's <script> stays text.

Needs Debian's chromium (`apt-get install -y --no-install-recommends chromium`); skipped without it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from report_fixtures import HOSTILE, coldstart, store_full_run
from servewise.report import charts
from servewise.report.html import bundle_from_store, write_report
from servewise.store import RunStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)"),
]
WIDTH, HEIGHT = 1200, 9000


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    run_id = store_full_run(tmp / "runs.db")
    with RunStore(tmp / "runs.db") as store:
        return write_report(tmp / "report.html", bundle_from_store(store, run_id, coldstart=coldstart()))


def _hex(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)])


def _pixels_near(img: np.ndarray, color: str, tolerance: float = 0.06) -> int:
    return int((np.abs(img - _hex(color)).max(axis=2) < tolerance).sum())


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Refused to" in line]


def test_console_errors_would_be_seen(tmp_path):
    """The control: a page that does log an error shows up in the lines the report tests check."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('boom'); missing();</script></body></html>")
    done = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert any("boom" in line for line in _console_lines(done.stderr))


def test_dom_keeps_server_script_as_text(report, tmp_path):
    done = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "<script" not in dom  # nothing became an element
    assert dom.count("&lt;script&gt;alert('pwned')&lt;/script&gt;") >= 6  # and the text is still there
    assert "Simulated target" in dom
    assert _console_lines(done.stderr) == []


def test_screenshot_shows_every_chart(report, tmp_path):
    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert _console_lines(done.stderr) == []
    img = image.imread(shot)[:, :, :3]
    assert img.shape[:2] == (HEIGHT, WIDTH)
    # Each chart has a colour nothing else on the page uses: its pixels prove the SVG was drawn.
    assert _pixels_near(img, charts.BOTTLENECK_FACE, 0.02) > 20_000  # the bottleneck panel's shading
    assert _pixels_near(img, "#9333ea") > 5_000  # cold-start bars
    assert _pixels_near(img, "#16a34a") > 3_000  # cheapest tier's bar (and the p99 line of the sweep)
    assert _pixels_near(img, charts.PALETTE[1]) > 1_000  # p95 curves and legend swatches
    assert _pixels_near(img, charts.SLO_COLOR) > 200  # SLO lines
    assert HOSTILE  # the strings checked in the DOM test are the ones drawn here
