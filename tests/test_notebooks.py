"""The teaching notebooks: committed without outputs, and each one runs headless (FAST mode)
with the venv's kernel and reproduces its key numbers.

Execution uses nbclient with kernel ``python3`` (jupyter_client maps its ``python`` argv to
this interpreter, i.e. the venv), cwd ``notebooks/`` and ``WORKBENCH_FAST=1``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_segmentation", "02_biomarkers", "03_model_fitting", "04_interpretability", "05_covid_media"]
TIMEOUT_S = 600


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_all_notebooks_exist():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_structure(name):
    nb = _read(name)
    assert nb.cells[0].cell_type == "markdown"
    intro = nb.cells[0].source
    assert "What you will learn" in intro and "Time:" in intro
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert re.search(r"^FAST = False", code[0].source, re.M)
    assert "setup_offline_charts()" in code[1].source  # Altair charts draw offline (no CDN)
    src = "\n".join(c.source for c in code)
    assert "WORKBENCH_FAST" in src and "from workbench" in src


def _execute(name: str) -> tuple[nbformat.NotebookNode, str, float]:
    from nbclient import NotebookClient

    nb = _read(name)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('KERNEL_PYTHON=' + sys.executable)"))
    env_before = os.environ.get("WORKBENCH_FAST")
    os.environ["WORKBENCH_FAST"] = "1"
    try:
        t0 = time.perf_counter()
        NotebookClient(
            nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        ).execute()
        seconds = time.perf_counter() - t0
    finally:
        if env_before is None:
            os.environ.pop("WORKBENCH_FAST", None)
        else:
            os.environ["WORKBENCH_FAST"] = env_before
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{name}: {out.ename}: {out.evalue}"
            if out.output_type == "stream":
                text.append(out.text)
    return nb, "\n".join(text), seconds


#: executed notebooks of this test session (execution takes minutes: once per notebook)
_EXECUTED: dict[str, tuple[nbformat.NotebookNode, str, float]] = {}


def executed_notebook(name: str) -> nbformat.NotebookNode:
    if name not in _EXECUTED:
        _EXECUTED[name] = _execute(name)
    return _EXECUTED[name][0]


@pytest.fixture(scope="module")
def executed():
    def run(name: str) -> str:
        executed_notebook(name)
        return _EXECUTED[name][1]

    return run


def _number(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m, f"pattern {pattern!r} not in the notebook output"
    return float(m.group(1))


def _check_kernel(text: str) -> None:
    kernel = re.search(r"KERNEL_PYTHON=(.*)", text).group(1).strip()
    assert Path(kernel).resolve().parent == Path(sys.executable).resolve().parent, kernel


@pytest.mark.slow
def test_01_segmentation(executed):
    out = executed("01_segmentation")
    _check_kernel(out)
    assert "FAST=True" in out
    assert _number(out, r"Lung Dice \(phantom, both lungs\): ([0-9.]+)") >= 0.97
    assert _number(out, r"Lung Dice \(real CT vs TotalSegmentator reference\): ([0-9.]+)") >= 0.9
    assert _number(out, r"Lesion Dice \(phantom, threshold\): ([0-9.]+)") >= 0.5
    # the shipped network's cross-validated figures, read from its metadata (floors as in test_segmentation_lesions)
    assert _number(out, r"Cross-validated mean Dice \(50 real slices, 5 folds\): ([0-9.]+)") >= 0.72
    assert _number(out, r"expert lesion inside the lung mask: ([0-9.]+) %") >= 95.0


@pytest.mark.slow
def test_02_biomarkers(executed):
    out = executed("02_biomarkers")
    _check_kernel(out)
    measured = _number(out, r"lesion_pct_lung: measured ([0-9.]+) %")
    truth = _number(out, r"from true masks ([0-9.]+) %")
    assert truth > 1 and abs(measured - truth) < 0.5 * truth
    assert _number(out, r"a factor ([0-9.]+)") > 1.5  # one voxel of border matters


@pytest.mark.slow
def test_03_model_fitting(executed):
    out = executed("03_model_fitting")
    _check_kernel(out)
    best = _number(out, r"best cross-validated AUC: \w+ ([0-9.]+)")
    ceiling = _number(out, r"Bayes ceiling ([0-9.]+)")
    assert 0.8 <= best <= ceiling + 0.03
    assert _number(out, r"ANN \(1x5-fold stratified\): pooled out-of-fold AUC ([0-9.]+)") >= 0.75


@pytest.mark.slow
def test_04_interpretability(executed):
    out = executed("04_interpretability")
    _check_kernel(out)
    assert _number(out, r"true drivers among the LightGBM top 10: (\d+)") >= 3
    if "Tongji table not available" not in out:
        honest = _number(out, r"LightGBM AUC: honest ([0-9.]+)")
        leaky = _number(out, r"leaky ([0-9.]+)")
        assert leaky > honest


def test_05_covid_media(executed):
    out = executed("05_covid_media")
    _check_kernel(out)
    assert "FAST=True" in out
    if "Covid-MedIA data not available" in out:
        assert "skipped" in out
    else:
        assert _number(out, r"Baseline logistic clinical\+extent: AUC ([0-9.]+)") >= 0.68
        assert _number(out, r"Holistic \(product features, [\w/]+\): AUC ([0-9.]+)") >= 0.68
        assert _number(out, r"3-class balanced accuracy: ([0-9.]+)") >= 0.45
        assert 0 <= _number(out, r"P\(severe\) = ([0-9.]+)") <= 1
        shipped = _number(out, r"Shipped model \(random forest, clinical \+ extent\), cross-validated: AUC ([0-9.]+)")
        assert shipped >= 0.72  # the sidecar's 5-fold figure is 0.775 (the same folds and model)
        assert "key inputs (80 % of the importance): Proportion of lung affected" in out  # clinical names
        assert _chart_outputs(executed_notebook("05_covid_media")) >= 3  # ROC with bands, 3-class matrix, SHAP
    assert 0 < _number(out, r"Shipped model threshold: ([0-9.]+)") < 1


# ----------------------------------------------------------------------------- charts offline in JupyterLab
#: chart outputs of the notebook in the visible tab (JupyterLab keeps other tabs in the page, hidden)
CHART_SELECTOR = ".jp-NotebookPanel:not(.lm-mod-hidden) div.wb-chart"


def _chart_outputs(nb: nbformat.NotebookNode) -> int:
    """How many outputs of an executed notebook are Altair charts (workbench's offline renderer)."""
    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            html_out = out.get("data", {}).get("text/html", "")
            if isinstance(html_out, list):
                html_out = "".join(html_out)
            assert "cdn.jsdelivr.net/npm/vega" not in html_out, "a chart output still loads vega from a CDN"
            n += html_out.count('class="wb-chart"')
    return n


@contextmanager
def jupyterlab_server(root: Path, state: Path, timeout_s: float = 120.0):
    """JupyterLab on a free 127.0.0.1 port, token off, all state (notary, settings, workspaces,
    runtime) under ``state``; yields the base URL."""
    from test_browser import free_port, wait_for_server

    port = free_port()
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root}",
        f"--NotebookNotary.data_dir={state / 'notary'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
    ]
    if hasattr(os, "getuid") and os.getuid() == 0:
        cmd.append("--allow-root")
    log = open(state / "jupyterlab.log", "wb")  # noqa: SIM115 -- closed below
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(
            f"{url}/api/status",
            proc,
            timeout_s,
            lambda: "JupyterLab did not start:\n" + (state / "jupyterlab.log").read_text()[-3000:],
        )
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


_DRAWN_JS = """(box) => {
  const svg = box.querySelector("svg.marks");
  const canvas = box.querySelector("canvas");
  const r = (svg || canvas || box).getBoundingClientRect();
  const marks = svg ? svg.querySelectorAll("g.role-mark > *").length : 0;
  let inked = 0;
  if (canvas) {
    const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) inked++;
  }
  const img = box.querySelector("img.wb-static");
  return {state: box.getAttribute("data-rendered"), marks, inked, width: r.width, height: r.height,
          static: img ? img.naturalWidth : 0};
}"""


def _open_and_measure(page, url: str, path: str, expected: int, *, wait_for: str) -> list[dict]:
    """Open one notebook in JupyterLab, scroll every chart output into view and return what each drew."""
    page.goto(f"{url}/lab/tree/{path}?reset")  # ?reset: no tabs restored from an earlier visit
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    seen: list[dict] = []
    deadline = time.monotonic() + 180
    while len(seen) < expected and time.monotonic() < deadline:
        boxes = page.locator(CHART_SELECTOR)
        if boxes.count() > len(seen):
            box = boxes.nth(len(seen))
            box.scroll_into_view_if_needed()
            if wait_for == "interactive":
                box.evaluate(  # the interactive chart replaces the static one (or says why not), 60 s at most
                    "(b) => new Promise((ok) => { const t0 = Date.now(); const t = setInterval(() => {"
                    " if (b.getAttribute('data-rendered') !== 'static' || Date.now() - t0 > 60000)"
                    " { clearInterval(t); ok(); } }, 100); })"
                )
            else:
                box.locator("img.wb-static").evaluate("(i) => i.complete || new Promise((ok) => { i.onload = ok; })")
            seen.append(box.evaluate(_DRAWN_JS))
        else:
            page.mouse.wheel(0, 800)  # JupyterLab renders cells as they come into view
            page.wait_for_timeout(200)
    return seen


def charts_in_jupyterlab(notebooks: dict[str, nbformat.NotebookNode], untrusted: str, work: Path) -> dict:
    """Open executed notebooks in JupyterLab in headless Chromium with every request that is not
    to the local JupyterLab blocked; return what each chart drew.

    Every notebook is signed (the user ran it: its outputs are trusted, as after "Run All"); an
    unsigned copy of ``notebooks[untrusted]`` stands for a notebook executed by someone else,
    whose scripts JupyterLab strips.
    Returns ``{"expected": {name: n charts}, "problems": [...], "blocked": [urls]}``.
    """
    from nbformat.sign import NotebookNotary
    from playwright.sync_api import sync_playwright
    from test_browser import launch

    root, state = work / "notebooks", work / "state"
    root.mkdir(parents=True)
    for sub in ("settings", "workspaces", "runtime", "notary"):
        (state / sub).mkdir(parents=True)
    notary = NotebookNotary(data_dir=str(state / "notary"))
    expected: dict[str, int] = {}
    for name, nb in notebooks.items():
        expected[name] = _chart_outputs(nb)
        notary.sign(nb)
        nbformat.write(nb, root / f"{name}.ipynb")
    plain = nbformat.from_dict(notebooks[untrusted])
    plain.metadata["copied_from"] = "another computer"  # other content: the notary has no signature for it
    nbformat.write(plain, root / f"untrusted_{untrusted}.ipynb")

    problems: list[str] = []
    blocked: list[str] = []
    with jupyterlab_server(root, state) as url, sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})

        def local_only(route):
            if route.request.url.startswith((url, "data:", "blob:", "about:")):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", local_only)
        for name, n in expected.items():
            page = context.new_page()
            drawn = _open_and_measure(page, url, f"{name}.ipynb", n, wait_for="interactive")
            page.close()
            if len(drawn) != n:
                problems.append(f"{name}: {len(drawn)} of {n} charts appeared in JupyterLab")
            for i, d in enumerate(drawn):
                ok = d["state"] == "interactive" and (d["marks"] > 0 or d["inked"] > 0)
                if not ok or d["width"] <= 50 or d["height"] <= 20:
                    problems.append(f"{name} chart {i + 1}: {d}")
        page = context.new_page()
        drawn = _open_and_measure(page, url, f"untrusted_{untrusted}.ipynb", expected[untrusted], wait_for="static")
        if len(drawn) != expected[untrusted]:
            problems.append(f"untrusted {untrusted}: {len(drawn)} of {expected[untrusted]} charts appeared")
        problems += [
            f"untrusted {untrusted} chart {i + 1}: {d}"
            for i, d in enumerate(drawn)
            if d["state"] not in (None, "static") or d["static"] < 50  # the sanitizer drops data-* attributes
        ]
        page.screenshot(path=str(work / "untrusted.png"))
        browser.close()
    return {"expected": expected, "problems": problems, "blocked": blocked}


@pytest.mark.browser
@pytest.mark.slow
def test_notebook_charts_render_offline_in_jupyterlab(tmp_path):
    """Every Altair chart of every executed notebook draws in JupyterLab with the internet blocked
    (interactive when trusted, the static SVG when not)."""
    from test_browser import _skip_reason

    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    result = charts_in_jupyterlab({name: executed_notebook(name) for name in NAMES}, "03_model_fitting", tmp_path)
    assert sum(result["expected"].values()) >= 12, result["expected"]
    assert not result["problems"], "charts without drawn content:\n" + "\n".join(result["problems"])
    assert not result["blocked"], f"JupyterLab or a chart asked for the internet: {result['blocked'][:5]}"
