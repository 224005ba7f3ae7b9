"""How fast does the app react once a case is analysed?

Prints a table of:
  * slice rendering (workbench.charts.slice_rgb + PNG encoding, what the viewer does on a
    slider move) for the sample case and a clinical-size 512 x 512 x 300 volume;
  * the 3D surface build (once per case, then cached);
  * a whole Case-page rerun in AppTest after a slider move (the analysis is cached, so
    this is layout + charts; in the browser only the viewer fragment reruns);
  * with --browser: key press on the slice slider -> new image shown in chromium.

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

    t0 = time.perf_counter()
    charts.surface_figure(res.lungs, res.lesions, sp)
    rows.append(("3D surfaces (once per case, cached)", f"{case['case_id']}", time.perf_counter() - t0, float("nan")))

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "pages" / "1_Case.py"), default_timeout=600)
    at.session_state["case_lesion_method"] = "threshold"
    at.session_state["case_sample"] = case["case_id"]
    t0 = time.perf_counter()
    at.run()
    rows.append(("Case page, first run (analysis, model fit, 3D)", "AppTest", time.perf_counter() - t0, float("nan")))
    n = at.slider(key="case_slice_axial").max
    vals = iter(np.random.default_rng(2).integers(0, n + 1, 1000))
    med, mx = timed(lambda: at.slider(key="case_slice_axial").set_value(int(next(vals))).run(), args.repeats)
    rows.append(("Case page rerun after slice slider move", "AppTest (whole page)", med, mx))
    ops = iter(np.linspace(0.1, 0.9, 50))
    med, mx = timed(lambda: at.slider(key="case_opacity").set_value(float(next(ops))).run(), args.repeats)
    rows.append(("Case page rerun after opacity slider move", "AppTest (whole page)", med, mx))
    assert not at.exception and not at.error

    if args.browser:
        import test_browser as tb
        from playwright.sync_api import sync_playwright

        if tb._skip_reason():
            print("browser skipped:", tb._skip_reason())
        else:
            with tb.streamlit_server() as url, sync_playwright() as p:
                browser = tb.launch(p)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                tb.open_case(page, url, case["case_id"])
                page.wait_for_timeout(2000)
                lat = tb.slider_latency_s(page, n=args.repeats)
                rows.append(
                    (
                        "browser: slider key press -> new slice shown",
                        "chromium, viewer fragment",
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
