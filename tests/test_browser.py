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
#: the Case page's slice viewer (workbench.slice_viewer) lives in this iframe
VIEWER_FRAME = 'iframe[title="st.iframe"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(health_url: str, proc: subprocess.Popen, timeout_s: float, why) -> None:
    """Wait until ``health_url`` answers 200; RuntimeError(``why()``) if ``proc`` exits or time runs out."""
    t0 = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(health_url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() - t0 > timeout_s:
            raise RuntimeError(why())
        time.sleep(0.5)


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
        wait_for_server(
            f"{url}/_stcore/health",
            proc,
            timeout_s,
            lambda: (
                "streamlit did not start:\n"
                + (proc.stdout.read().decode(errors="replace") if proc.stdout else "")[-3000:]
            ),
        )
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


def viewer(page):
    """The slice viewer's frame (a Playwright FrameLocator)."""
    return page.frame_locator(VIEWER_FRAME).first


def script_state(page) -> str:
    """Streamlit's script state: "running", "notRunning", ..."""
    return page.locator('[data-testid="stApp"]').get_attribute("data-test-script-state") or ""


def wait_idle(page, timeout_ms: int = 240_000) -> None:
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state') === 'notRunning'",
        timeout=timeout_ms,
    )


def open_case(page, url: str, case_id: str, method: str = "threshold", timeout_ms: int = 240_000) -> None:
    """Open a sample case and wait until its slice viewer has drawn and the script has finished."""
    page.goto(f"{url}/Case?case={case_id}&method={method}")
    viewer(page).locator("canvas#c[data-drawn]:not([data-drawn='0'])").wait_for(timeout=timeout_ms)
    wait_idle(page, timeout_ms)


def click_tab(page, name: str) -> None:
    """Open a tab (the Case page's tabs are lazy: opening one runs it) and wait for the run."""
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(150)
    wait_idle(page)


def slider_latency_s(page, n: int = 5) -> list[float]:
    """Seconds from a key press on the viewer's slice slider to the new slice drawn."""
    frame = viewer(page)
    slider, canvas = frame.locator("#s"), frame.locator("canvas#c")
    out = []
    for _ in range(n):
        drawn = int(canvas.get_attribute("data-drawn"))
        key = "ArrowLeft" if int(slider.input_value()) > 0 else "ArrowRight"
        slider.focus()
        t0 = time.perf_counter()
        slider.press(key)
        canvas.locator(f"xpath=self::*[number(@data-drawn) > {drawn}]").wait_for(timeout=30_000)
        out.append(time.perf_counter() - t0)
    return out


_RATES = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"] svg text')]
  .map((t) => t.textContent).filter((t) => /^(Sensitivity|Specificity|PPV|NPV): /.test(t)).join(' | ')"""


def cohort_threshold_latency_s(page, n: int = 5) -> list[float]:
    """Seconds from a key press on the ROC chart's threshold slider (drawn by Vega) to the rates at
    the new threshold drawn; the slider must not make Streamlit run anything."""
    slider = page.locator('[data-testid="stVegaLiteChart"] input[type="range"]').first
    out = []
    for i in range(n):
        before = page.evaluate(_RATES)
        slider.focus()
        t0 = time.perf_counter()
        slider.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
        page.wait_for_function(f"() => ({_RATES})() !== {before!r}", timeout=30_000)
        out.append(time.perf_counter() - t0)
        assert script_state(page) == "notRunning"
    return out


def open_cohort(page, url: str, timeout_ms: int = 600_000) -> None:
    page.goto(f"{url}/Cohort")
    page.wait_for_selector('[data-testid="stVegaLiteChart"] input[type="range"]', timeout=timeout_ms)
    wait_idle(page, timeout_ms)


def cached_case_render_s(browser, url: str, case_id: str, method: str = "threshold") -> float:
    """Seconds to open an already analysed case in a new session: navigation until the viewer has
    drawn and the script has finished."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        t0 = time.perf_counter()
        open_case(page, url, case_id, method)
        return time.perf_counter() - t0
    finally:
        context.close()


def launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# ----------------------------------------------------------------------------- pytest
@contextmanager
def chromium_app():
    """The app on a local server and Debian's chromium (skips when either is missing): (url, browser)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with streamlit_server() as url, sync_playwright() as p:
        browser = launch(p)
        try:
            yield url, browser
        finally:
            browser.close()


def sample_case_or_skip() -> str:
    case_id = default_sample_case()
    if case_id is None:
        pytest.skip("no sample cases in sample_data/")
    return case_id


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
    case_id = sample_case_or_skip()
    with chromium_app() as (url, browser):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        offsite: list[str] = []
        page.on(
            "request",
            lambda r: offsite.append(r.url) if not r.url.startswith((url, "data:", "blob:", "about:")) else None,
        )
        page.goto(url)
        page.get_by_text("Research use only").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "home.png"))
        # the sample cases on Home are links to the Case page
        page.get_by_role("link", name=case_id).first.click()
        viewer(page).locator("canvas#c[data-drawn]:not([data-drawn='0'])").wait_for(timeout=240_000)
        assert page.get_by_role("heading", name=case_id).count() == 1 and "case=" in page.url

        open_case(page, url, case_id)
        assert page.get_by_text("Research use only").first.is_visible()
        assert page.get_by_text("CT severity score").first.is_visible()
        canvas = viewer(page).locator("canvas#c")
        box = canvas.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 150
        page.screenshot(path=str(tmp_path / "case.png"), full_page=True)

        # slices move in the browser: no script run on the server, the new slice drawn at once
        first = int(canvas.get_attribute("data-slice"))
        lat = slider_latency_s(page, n=3)
        assert int(canvas.get_attribute("data-slice")) != first and script_state(page) == "notRunning"
        assert max(lat) < 2.0, lat

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
    assert (tmp_path / "case.png").stat().st_size > 10_000


def _check_download(path: Path) -> None:
    """Each kind of Case-page download is a complete, valid file."""
    import gzip

    data = path.read_bytes()
    assert data, path.name
    if path.name.endswith(".nii.gz"):
        raw = gzip.decompress(data)
        assert int.from_bytes(raw[:4], "little") == 348 and raw[344:348] in (b"n+1\x00", b"ni1\x00"), path.name
    elif path.name.endswith("_radiomics.csv"):  # one row: case_id + the 535 features under the cohort's names
        import pandas as pd

        from workbench.radiomics import COHORT_COLUMNS

        table = pd.read_csv(path)
        assert list(table.columns) == ["case_id", *COHORT_COLUMNS] and len(table) == 1
        assert table[list(COHORT_COLUMNS)].notna().sum(axis=1).iloc[0] >= 3 * 107  # lungs and heart at least
    elif path.suffix == ".csv":
        import pandas as pd

        table = pd.read_csv(path)
        assert {"name", "value", "unit"} <= set(table.columns) and len(table) > 20
    elif path.suffix == ".html":
        text = data.decode()
        assert "Research use only" in text and text.rstrip().endswith("</html>")
    elif path.suffix == ".dcm":
        import pydicom

        seg = pydicom.dcmread(path)
        assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 4
    else:
        raise AssertionError(f"unexpected download {path.name}")


@pytest.mark.browser
@pytest.mark.slow
def test_downloads_in_quick_succession(tmp_path):
    """Every download button of the Case page (a DICOM case: masks, biomarkers, report, radiomics
    computed on the first click, DICOM SEG) clicked in quick succession, three rounds: every click gives its complete file (a rerun after
    each click used to invalidate the files of the other buttons: "Deferred file not found")."""
    from workbench.sample_data import sample_cases

    if "phantom_dicom" not in set(sample_cases()["case_id"]):
        pytest.skip("the sample DICOM case is missing")
    with chromium_app() as (url, browser):
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        open_case(page, url, "phantom_dicom")
        click_tab(page, "Downloads")
        buttons = page.locator('[data-testid="stDownloadButton"] button')
        buttons.first.wait_for(timeout=60_000)
        labels = [buttons.nth(i).inner_text() for i in range(buttons.count())]
        assert len(labels) == 6 and any("DICOM SEG" in label for label in labels), labels
        assert any("Radiomics" in label for label in labels), labels
        got = []
        for round_ in range(3):
            pending = []
            for i in range(len(labels)):
                with page.expect_download(timeout=120_000) as dl:
                    buttons.nth(i).click()
                pending.append(dl.value)
                page.wait_for_timeout(150)  # clicks about as fast as a hurried person
            for d in pending:
                assert d.failure() is None, (d.suggested_filename, d.failure())
                target = tmp_path / f"{round_}_{d.suggested_filename}"
                d.save_as(target)
                _check_download(target)
                got.append(target.name)
        assert len(got) == 3 * len(labels)
        assert not page.get_by_text("Traceback").count()


@pytest.mark.browser
@pytest.mark.slow
def test_case_biomarker_charts_are_readable(tmp_path):
    """The cohort distribution charts of the Biomarkers tab are tall enough to read (they were
    110 px including the axes, about 30 px of bars, with a clipped axis title)."""
    with chromium_app() as (url, browser):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_case(page, url, sample_case_or_skip())
        click_tab(page, "Biomarkers")
        charts = page.locator('[data-testid="stVegaLiteChart"]')
        charts.first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        assert charts.count() == 6
        for i in range(charts.count()):
            box = charts.nth(i).bounding_box()
            assert box and box["height"] >= 180, box


@pytest.mark.browser
@pytest.mark.slow
def test_cohort_page_after_a_csv_upload(tmp_path):
    """Finding 4: after a CSV upload the Features and Models boxes show what was fitted and the
    threshold slider shows the threshold in use (they were empty and 0.00); the ROC has a legend;
    the confusion matrix names the outcome's classes; the threshold moves without a rerun."""
    from workbench.synthetic_cohort import synthetic_cohort

    table = synthetic_cohort(300, seed=3)
    table["death"] = table["death"].astype(int)
    csv = tmp_path / "my_cohort.csv"
    table.drop(columns=["severe", "icu", "intubation"]).to_csv(csv, index=False)  # outcome: death
    with chromium_app() as (url, browser):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_cohort(page, url)
        page.get_by_text("Upload a table (CSV, Excel, Parquet)").click()
        wait_idle(page)
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(csv))
        page.wait_for_timeout(1000)
        wait_idle(page, 600_000)
        page.wait_for_selector('[data-testid="stVegaLiteChart"] input[type="range"]', timeout=600_000)
        page.wait_for_timeout(1500)
        boxes = {
            m.locator("label").first.inner_text(): m.inner_text()
            for m in page.locator('[data-testid="stMultiSelect"]').all()
        }
        assert "logistic_l2" in boxes["Models"] and "lightgbm" in boxes["Models"], boxes
        assert "Age" in boxes["Features"], boxes
        slider = page.locator('[data-testid="stVegaLiteChart"] input[type="range"]').first
        assert 0.05 < float(slider.input_value()) < 0.95
        svg = page.locator('[data-testid="stVegaLiteChart"] svg').first
        assert svg.locator("g.role-legend").count() >= 1  # the ROC legend
        labels = page.evaluate(
            "() => [...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] svg text')].map((t) => t.textContent)"
        )
        assert "died" in labels and "survived" in labels and "severe" not in labels
        rates = page.evaluate(_RATES)
        lat = cohort_threshold_latency_s(page, n=3)
        assert page.evaluate(_RATES) != rates and max(lat) < 2.0, lat
        page.screenshot(path=str(tmp_path / "cohort_upload.png"))


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
                if tab == "3D":
                    page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=120_000)
                if tab == "Prediction":  # a patient with some clinical values: the rest is shown as not provided
                    for label, value in (
                        ("Age (years)", "71"),
                        ("hs-CRP (mg/L)", "80"),
                        ("Lactate dehydrogenase", "420"),
                    ):
                        page.get_by_label(label).first.fill(value)
                    page.get_by_role("button", name="Update prediction").click()
                    page.wait_for_timeout(300)
                    wait_idle(page)
                    page.get_by_text("Why this prediction").first.scroll_into_view_if_needed()
                    page.mouse.wheel(0, -250)
                elif tab == "Biomarkers":
                    charts = page.locator('[data-testid="stVegaLiteChart"]')
                    charts.first.wait_for(timeout=60_000)
                    charts.last.scroll_into_view_if_needed()
                    page.mouse.move(800, 500)
                    page.mouse.wheel(0, 250)
                else:
                    page.get_by_text("CT severity score").first.scroll_into_view_if_needed()
                page.wait_for_timeout(2500)
                page.screenshot(path=str(out_dir / name))
        open_cohort(page, url)
        page.wait_for_timeout(2000)
        page.get_by_role("tab", name="ROC & threshold").scroll_into_view_if_needed()
        page.mouse.move(800, 600)
        page.mouse.wheel(0, 300)
        page.wait_for_timeout(800)
        page.screenshot(path=str(out_dir / "cohort_roc.png"))
        page.get_by_role("tab", name="Explanations (SHAP)").click()
        page.get_by_text("Global importance").first.wait_for(timeout=300_000)
        wait_idle(page, 300_000)
        page.wait_for_timeout(3000)
        page.get_by_text("Global importance").first.scroll_into_view_if_needed()
        page.mouse.wheel(0, -120)
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
