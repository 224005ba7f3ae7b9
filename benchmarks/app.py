"""How fast does the app react once a case is analysed?

Prints a table of:
  * slice rendering (workbench.charts.slice_rgb + PNG encoding: the report and follow-up
    images) for the sample case and a clinical-size 512 x 512 x 300 volume;
  * the browser slice viewer's stack (workbench.slice_viewer: every slice of a view encoded once
    per case, view and window) and its size, for the sample case and 512 x 512 x 300;
  * the 3D surface build (once per case, then cached);
  * Case-page runs in AppTest: first run, a cached case in a new session, a view change;
  * with --browser, in chromium (the targets of issue 16): a cached case opened in a new session
    (navigation -> viewer drawn, script finished), a key press on the slice slider -> the new slice
    drawn, a key press on the Cohort page's threshold slider (part of the ROC chart) -> the rates at
    the new threshold drawn.

Run: .venv/bin/python benchmarks/app.py [--repeats 7] [--browser]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def timed(fn, repeats: int) -> tuple[float, float]:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), max(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--browser", action="store_true", help="also measure in chromium (needs /usr/bin/chromium)")
    args = ap.parse_args()

    from workbench import charts
    from workbench.pipeline import analyze_case
    from workbench.sample_data import sample_cases

    rows: list[tuple[str, str, float, float]] = []
    from test_browser import default_sample_case

    cases = sample_cases().set_index("case_id", drop=False)
    case = cases.loc[default_sample_case()]
    t0 = time.perf_counter()
    res = analyze_case(case["path"], lesion_method="threshold")
    rows.append(("analyze_case (threshold), first time", case["case_id"], time.perf_counter() - t0, float("nan")))
    hu, sp = res.ct.hu, res.ct.spacing_mm
    shape = "x".join(map(str, res.ct.shape[::-1]))
    for view in charts.VIEWS:
        n = charts.n_slices(hu.shape, view)
        idx = iter(np.random.default_rng(0).integers(0, n, 1000))
        med, mx = timed(
            lambda view=view, idx=idx: charts.slice_rgb(
                hu, view, next(idx), lungs=res.lungs, lesions=res.lesions, spacing_mm=sp, min_side=480
            ),
            args.repeats,
        )
        rows.append((f"slice_rgb (overlay, 480 px), {view}", f"{case['case_id']} {shape}", med, mx))
    img = charts.slice_rgb(
        hu, "axial", hu.shape[0] // 2, lungs=res.lungs, lesions=res.lesions, spacing_mm=sp, min_side=480
    )
    med, mx = timed(lambda: charts.png_bytes(img), args.repeats)
    rows.append(("PNG encoding of that image", f"{img.shape[1]}x{img.shape[0]} px", med, mx))

    big = np.random.default_rng(0).normal(-500, 300, (300, 512, 512)).astype(np.float32)
    lab = (big > -200).astype(np.uint8)
    les = (big > 200).astype(np.uint8)
    for view in charts.VIEWS:
        n = charts.n_slices(big.shape, view)
        idx = iter(np.random.default_rng(1).integers(0, n, 1000))
        med, mx = timed(
            lambda view=view, idx=idx: charts.slice_rgb(
                big, view, next(idx), lungs=lab, lesions=les, spacing_mm=(0.74, 0.74, 1.25)
            ),
            args.repeats,
        )
        rows.append((f"slice_rgb (overlay), {view}", "512x512x300 (0.74/1.25 mm)", med, mx))

    from workbench.slice_viewer import slice_stack, viewer_html
    from workbench.synthetic import make_phantom

    big_case = make_phantom(0.4, seed=1, shape_zyx=(300, 512, 512))
    for label, ct_, lung_mask, lesion_mask in (
        (f"{case['case_id']} {shape}", res.ct, res.lungs, res.lesions),
        ("phantom 512x512x300", big_case.ct, big_case.lungs, big_case.lesions),
    ):
        t0 = time.perf_counter()
        stack = slice_stack(ct_.hu, "axial", lungs=lung_mask, lesions=lesion_mask, spacing_mm=ct_.spacing_mm)
        page_mb = len(viewer_html(stack)) / 1e6
        rows.append(
            (f"browser slice stack, axial ({page_mb:.1f} MB page)", label, time.perf_counter() - t0, float("nan"))
        )
    del big_case

    t0 = time.perf_counter()
    charts.surface_figure(res.lungs, res.lesions, sp)
    rows.append(("3D surfaces (once per case, cached)", f"{case['case_id']}", time.perf_counter() - t0, float("nan")))

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "pages" / "1_Case.py"), default_timeout=600)
    at.session_state["case_lesion_method"] = "threshold"
    at.session_state["case_sample"] = case["case_id"]
    t0 = time.perf_counter()
    at.run()
    rows.append(("Case page, first run (analysis, slice stack)", "AppTest", time.perf_counter() - t0, float("nan")))

    def new_session():
        s = AppTest.from_file(str(REPO / "pages" / "1_Case.py"), default_timeout=600)
        s.session_state["case_lesion_method"] = "threshold"
        s.session_state["case_sample"] = case["case_id"]
        s.run()

    med, mx = timed(new_session, args.repeats)
    rows.append(("Case page, cached case, new session", "AppTest (Slices tab)", med, mx))
    views = iter(["coronal", "sagittal", "axial"] * 10)
    med, mx = timed(lambda: at.radio(key="case_view").set_value(next(views)).run(), args.repeats)
    rows.append(("Case page rerun after a view change", "AppTest (stacks cached after 1st)", med, mx))
    assert not at.exception and not at.error

    if args.browser:
        import test_browser as tb
        from playwright.sync_api import sync_playwright

        if tb._skip_reason():
            print("browser skipped:", tb._skip_reason())
        else:
            with tb.streamlit_server() as url, sync_playwright() as p:
                browser = tb.launch(p)
                tb.cached_case_render_s(browser, url, case["case_id"])  # analysis, caches warm
                renders = [tb.cached_case_render_s(browser, url, case["case_id"]) for _ in range(args.repeats)]
                rows.append(
                    (
                        "browser: cached Case page, new session",
                        "chromium, target <= 2 s",
                        statistics.median(renders),
                        max(renders),
                    )
                )
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                tb.open_case(page, url, case["case_id"])
                page.wait_for_timeout(1000)
                lat = tb.slider_latency_s(page, n=args.repeats)
                rows.append(
                    (
                        "browser: slice key press -> slice drawn",
                        "chromium, target <= 0.3 s",
                        statistics.median(lat),
                        max(lat),
                    )
                )
                tb.open_cohort(page, url)
                lat = tb.cohort_threshold_latency_s(page, n=args.repeats)
                rows.append(
                    (
                        "browser: Cohort threshold key press -> rates drawn",
                        "chromium, target <= 0.3 s",
                        statistics.median(lat),
                        max(lat),
                    )
                )
                browser.close()

    w = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    print(f"{'step':<{w}}  {'data':<{w2}}  {'median_s':>9}  {'max_s':>7}")
    for name, data, med, mx in rows:
        print(f"{name:<{w}}  {data:<{w2}}  {med:9.3f}  {mx:7.3f}")


if __name__ == "__main__":
    main()
