"""The teaching notebooks: committed without outputs, and each one runs headless (FAST mode)
with the venv's kernel and reproduces its key numbers.

Execution uses nbclient with kernel ``python3`` (jupyter_client maps its ``python`` argv to
this interpreter, i.e. the venv), cwd ``notebooks/`` and ``WORKBENCH_FAST=1``.
"""

from __future__ import annotations

import os
import re
import sys
import time
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
    src = "\n".join(c.source for c in code)
    assert "WORKBENCH_FAST" in src and "from workbench" in src


def _execute(name: str) -> tuple[str, float]:
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
    return "\n".join(text), seconds


@pytest.fixture(scope="module")
def executed():
    cache: dict[str, tuple[str, float]] = {}

    def run(name: str) -> str:
        if name not in cache:
            cache[name] = _execute(name)
        return cache[name][0]

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
    if "Real annotated slices not available" not in out:
        assert _number(out, r"Lesion Dice \(real slices, threshold, auto\+gt lungs\): ([0-9.]+)") >= 0.4


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
    assert 0 < _number(out, r"Shipped model threshold: ([0-9.]+)") < 1
