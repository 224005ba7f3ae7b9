"""End to end in a real browser: `streamlit run app.py` on localhost, driven by Debian's chromium.

Never downloads a browser: uses /usr/bin/chromium (or $WORKBENCH_CHROMIUM) and skips with a
reason when it is absent. Also checks that the app makes no request off the machine.

Script mode saves screenshots of each page for the README::

    python tests/test_browser.py --screenshots docs/screenshots
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWER_IMG = '[data-testid="stImage"] img'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(timeout_s: float = 90.0):
    """Start the app headless on a free localhost port; yield its base URL; stop it."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > timeout_s:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"streamlit did not start:\n{out[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def default_sample_case() -> str | None:
    """phantom_moderate when the sample data has it, else the smallest sample case."""
    sys.path.insert(0, str(REPO))
    from workbench.sample_data import sample_cases

    cases = sample_cases()
    if not len(cases):
        return None
    if "phantom_moderate" in set(cases["case_id"]):
        return "phantom_moderate"
    sizes = [Path(p).stat().st_size for p in cases["path"]]
    return str(cases.iloc[sizes.index(min(sizes))]["case_id"])


def open_case(page, url: str, case_id: str, method: str = "threshold", timeout_ms: int = 240_000) -> None:
    page.goto(f"{url}/Case?case={case_id}&method={method}")
    page.wait_for_selector(VIEWER_IMG, timeout=timeout_ms)
    # the whole script has finished when the last element (the report download) exists
    page.get_by_text("Case report (.html)").first.wait_for(state="attached", timeout=timeout_ms)


def click_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def slider_latency_s(page, n: int = 5) -> list[float]:
    """Seconds from a key press on the slice slider to the new slice image being shown."""
    thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
    out = []
    for _ in range(n):
        before = page.locator(VIEWER_IMG).first.get_attribute("src")
        key = "ArrowLeft" if int(thumb.get_attribute("value")) > int(thumb.get_attribute("min")) else "ArrowRight"
        thumb.focus()
        t0 = time.perf_counter()
        thumb.press(key)
        page.wait_for_function(
            "([sel, old]) => { const i = document.querySelector(sel); return i && i.src !== old && i.complete; }",
            arg=[VIEWER_IMG, before],
            timeout=30_000,
        )
        out.append(time.perf_counter() - t0)
    return out


def launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# ----------------------------------------------------------------------------- pytest
def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Debian chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright python package is not installed"
    return None


@pytest.mark.slow
@pytest.mark.browser
def test_app_in_chromium(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    case_id = default_sample_case()
    if case_id is None:
        pytest.skip("no sample cases in sample_data/")
    with streamlit_server() as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        offsite: list[str] = []
        page.on(
            "request",
            lambda r: offsite.append(r.url) if not r.url.startswith((url, "data:", "blob:", "about:")) else None,
        )
        page.goto(url)
        page.get_by_text("Research use only").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "home.png"))

        open_case(page, url, case_id)
        assert page.get_by_text("Research use only").first.is_visible()
        assert page.get_by_text("CT severity score").first.is_visible()
        img = page.locator(VIEWER_IMG).first
        box = img.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 150
        page.screenshot(path=str(tmp_path / "case.png"), full_page=True)

        lat = slider_latency_s(page, n=3)
        assert max(lat) < 10.0, lat  # a slice change re-renders without re-analysing

        click_tab(page, "3D")
        page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=120_000)
        page.screenshot(path=str(tmp_path / "case_3d.png"))

        # the one-page report downloads as self-contained HTML (generated on click)
        click_tab(page, "Downloads")
        with page.expect_download(timeout=120_000) as dl:
            page.get_by_text("Case report (.html)").first.click()
        report = tmp_path / dl.value.suggested_filename
        dl.value.save_as(report)
        html = report.read_text()
        assert report.name == f"{case_id}_report.html"
        assert "Research use only" in html and html.count("data:image/png;base64,") == 4
        assert "http://" not in html and "https://" not in html

        # a real upload through the file uploader: a damaged DICOM zip gives a clear error, no traceback
        import zipfile

        bad = tmp_path / "damaged_series.zip"
        with zipfile.ZipFile(bad, "w") as z:
            for i in range(12):
                z.writestr(f"IM{i:04d}.dcm", b"\x00" * 128 + b"DICM" + b"\xff" * 16)
        page.get_by_text("Upload", exact=True).first.click()
        page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(bad))
        page.get_by_text("could not be read (damaged or incomplete)").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "bad_upload.png"))
        assert not page.get_by_text("Traceback").count()
        assert not page.get_by_text("Traceback").count()
        assert offsite == [], f"requests left the machine: {offsite[:5]}"
        browser.close()
    assert (tmp_path / "case.png").stat().st_size > 10_000


# ----------------------------------------------------------------------------- script mode
def save_screenshots(out_dir: Path, method: str = "threshold") -> dict[str, float]:
    """Screenshots of each page into ``out_dir``; returns slider latencies (s)."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    case_id = default_sample_case() if "--case" not in sys.argv else sys.argv[sys.argv.index("--case") + 1]
    stats: dict[str, float] = {}
    with streamlit_server() as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(url)
        page.get_by_text("Research use only").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out_dir / "home.png"), full_page=True)
        if case_id:
            open_case(page, url, case_id, method=method)
            page.wait_for_timeout(2000)
            page.get_by_role("tab", name="Slices").scroll_into_view_if_needed()
            page.get_by_text("CT severity score").first.scroll_into_view_if_needed()
            page.screenshot(path=str(out_dir / "case_slices.png"))
            lat = slider_latency_s(page, n=5)
            stats = {"slider_median_s": statistics.median(lat), "slider_max_s": max(lat)}
            for tab, name in (
                ("3D", "case_3d.png"),
                ("Biomarkers", "case_biomarkers.png"),
                ("Prediction", "case_prediction.png"),
            ):
                click_tab(page, tab)
                page.get_by_text("CT severity score").first.scroll_into_view_if_needed()
                if tab == "3D":
                    page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=120_000)
                page.wait_for_timeout(2500)
                page.screenshot(path=str(out_dir / name))
        page.goto(f"{url}/Cohort")
        page.wait_for_selector('[data-testid="stVegaLiteChart"]', timeout=300_000)
        page.wait_for_timeout(3000)
        page.get_by_role("tab", name="ROC & threshold").scroll_into_view_if_needed()
        page.mouse.move(800, 600)
        page.mouse.wheel(0, 300)
        page.wait_for_timeout(800)
        page.screenshot(path=str(out_dir / "cohort_roc.png"))
        click_tab(page, "Explanations (SHAP)")
        page.wait_for_timeout(4000)
        page.mouse.wheel(0, 200)
        page.wait_for_timeout(800)
        page.screenshot(path=str(out_dir / "cohort_shap.png"))
        page.goto(f"{url}/About")
        page.get_by_text("Intended use").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out_dir / "about.png"))
        browser.close()
    return stats


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--screenshots", type=Path, default=REPO / "docs" / "screenshots")
    ap.add_argument("--case", default=None, help="sample case id (default: phantom_moderate)")
    ap.add_argument("--method", default="threshold", choices=["threshold", "unet"])
    args = ap.parse_args()
    reason = _skip_reason()
    if reason:
        sys.exit(f"cannot take screenshots: {reason}")
    print(save_screenshots(args.screenshots, method=args.method))
    print(f"screenshots written to {args.screenshots}")
