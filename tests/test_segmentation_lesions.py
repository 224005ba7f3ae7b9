"""Lesion segmentation (GGO vs consolidation): label convention, threshold baseline, shipped U-Net."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import shared_path

from workbench import synthetic
from workbench.errors import InvalidInput, MaskMismatch, ModelError
from workbench.io import CTScan
from workbench.segmentation import networks
from workbench.segmentation.lesions import segment_lesions


def _toy_chest(seed: int = 0) -> tuple[CTScan, np.ndarray, np.ndarray]:
    """A small chest-like volume with known lesions: body 40 HU, two lungs at -860 HU with thin
    vessels (+40 HU, 2 mm), one GGO blob (-550 HU) and one consolidation blob (-50 HU)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[0:24, 0:96, 0:128].astype(np.float32)
    hu = np.full(z.shape, -1000.0, np.float32)
    body = ((y - 48) / 44) ** 2 + ((x - 64) / 60) ** 2 <= 1
    hu[body] = 40.0
    lungs = np.zeros(z.shape, np.uint8)
    right = ((y - 48) / 30) ** 2 + ((x - 38) / 20) ** 2 + ((z - 12) / 14) ** 2 <= 1
    left = ((y - 48) / 30) ** 2 + ((x - 90) / 20) ** 2 + ((z - 12) / 14) ** 2 <= 1
    lungs[right], lungs[left] = 1, 2
    hu[lungs > 0] = -860.0
    vessel = (np.abs(y - 30) < 0.5) & (np.abs(z - 12) < 0.5) & (lungs > 0)  # 1.5 x 2 mm tube through both lungs
    hu[vessel] = 40.0
    les = np.zeros(z.shape, np.uint8)
    ggo = ((y - 55) ** 2 + (x - 36) ** 2 + (z - 12) ** 2) <= 8**2
    cons = ((y - 55) ** 2 + (x - 92) ** 2 + (z - 12) ** 2) <= 7**2
    hu[ggo], les[ggo] = -550.0, 1
    hu[cons], les[cons] = -50.0, 2
    hu += rng.normal(0, 15, hu.shape).astype(np.float32)
    return CTScan.from_array(hu, spacing_mm=(1.5, 1.5, 2.0)), lungs, les


#: floors under the cross-validated means measured for the shipped recipe (model card: Dice 0.742, GGO 0.550,
#: consolidation 0.346, specificity 0.958, pooled inside 95.8 %)
CV_FLOORS = {"dice": 0.72, "ggo_dice": 0.52, "consolidation_dice": 0.32, "specificity": 0.95, "pooled_inside_pct": 95.0}
#: measured false lesion volume of the threshold baseline on phantom_none (benchmarks/segmentation.py) + margin
HEALTHY_THRESHOLD_MAX_ML = 30.0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


_PHANTOM = {}


def _phantom(synthetic):
    if "p" not in _PHANTOM:
        _PHANTOM["p"] = synthetic.make_phantom(severity=0.5, seed=3, shape_zyx=(48, 128, 128))
    return _PHANTOM["p"]


@pytest.fixture(scope="module")
def toy():
    return _toy_chest()


@pytest.fixture(scope="module")
def real_slices():
    shared_path("covid_semiseg_train", "multiclass", "Imgs")
    from workbench.segmentation import realslices

    return realslices.load_real_slices()


def test_shipped_model_loads_offline_with_metadata():
    net, meta = networks.load_lesion_model()
    assert isinstance(net, torch.nn.Module) and not net.training
    assert meta["classes"] == ["background", "lung", "ggo", "consolidation"]
    assert meta["in_plane_size"] == networks.IN_PLANE_SIZE and meta["window_hu"] == list(networks.WINDOW_HU)
    assert meta["n_labeled_slices"] == 50 and meta["n_unlabeled_slices"] == 1600
    assert len(meta["training_data_sha256"]) == 64 and len(meta["unlabeled_data_sha256"]) == 64
    # the sidecar records the sha256 of exactly the shipped weights
    side = json.loads(networks.DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert side["weights_sha256"] == hashlib.sha256(networks.DEFAULT_WEIGHTS.read_bytes()).hexdigest()
    assert networks.DEFAULT_WEIGHTS.stat().st_size < 4e6
    assert networks.load_lesion_model()[0] is net  # cached in-process
    # the model card is generated from the same metadata
    card = networks.DEFAULT_WEIGHTS.with_suffix(".md").read_text()
    assert meta["training_data_sha256"] in card and side["weights_sha256"] in card


def test_cross_validated_figures_in_the_metadata():
    """The shipped recipe was cross-validated (5 grouped folds over the 50 labeled slices, evaluated
    through segment_lungs + segment_lesions); benchmarks/segmentation.py --cv-dir recomputes them."""
    meta = json.loads(networks.DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    cv = meta["cv"]
    assert cv["n_folds_done"] == 5
    folds = [set(f) for f in cv["folds"]]
    assert sum(len(f) for f in folds) == 50 and len(set().union(*folds)) == 50
    for group in meta["near_duplicate_groups"]:  # near-duplicate slices never straddle two folds
        assert sum(bool(set(group) & f) for f in folds) == 1
    assert {"10", "43"} in [set(g) for g in meta["near_duplicate_groups"]]
    s = cv["summary"]
    assert s["dice"]["n"] == 50
    # floors under the measured cross-validated means (see the model card)
    assert s["dice"]["mean"] >= CV_FLOORS["dice"]
    assert s["ggo_dice"]["mean"] >= CV_FLOORS["ggo_dice"]
    assert s["consolidation_dice"]["mean"] >= CV_FLOORS["consolidation_dice"]
    assert s["specificity"]["mean"] >= CV_FLOORS["specificity"]
    assert cv["pooled_inside_pct"] >= CV_FLOORS["pooled_inside_pct"]
    # the network beats the threshold baseline inside the same lung masks
    assert s["dice"]["mean"] > cv["threshold_summary"]["dice"]["mean"] + 0.1


@pytest.mark.parametrize("method", ["threshold", "unet"])
def test_label_convention_and_zero_outside_lungs(toy, method):
    ct, lungs, _ = toy
    out = segment_lesions(ct, lungs, method=method)
    assert out.dtype == np.uint8 and out.shape == ct.shape
    assert set(np.unique(out)) <= {0, 1, 2}
    assert not out[lungs == 0].any()


def test_threshold_finds_ggo_and_consolidation_and_drops_vessels(toy):
    ct, lungs, les = toy
    out = segment_lesions(ct, lungs, method="threshold")
    assert _dice(out == 1, les == 1) > 0.8
    assert _dice(out == 2, les == 2) > 0.8
    vessel = np.zeros_like(lungs, bool)
    vessel[11:14, 29:32, :] = True
    assert (out[vessel & (lungs > 0)] > 0).mean() < 0.05  # thin vessels removed


@pytest.mark.parametrize("method, floor", [("threshold", 0.8), ("unet", 0.75)])
def test_phantom_lesions_match_ground_truth(method, floor):
    ph = _phantom(synthetic)
    out = segment_lesions(ph.ct, ph.lungs, method=method)
    ref = np.asarray(ph.lesions)
    assert _dice(out > 0, ref > 0) > floor  # measured: threshold 0.90, unet 0.86
    assert _dice(out == 1, ref == 1) > floor - 0.05
    assert _dice(out == 2, ref == 2) > 0.5  # consolidation cores are small on this grid
    assert abs(int((out > 0).sum()) / int((ref > 0).sum()) - 1) < 0.3  # lesion volume within 30 %


@pytest.mark.slow
def test_real_slices_through_the_product(real_slices):
    """The shipped model on the 50 real slices (its training slices: a check that the product path
    works end to end on real exports, not an accuracy estimate — that is the CV test above)."""
    from workbench.segmentation import realslices

    inside = total = 0
    dices = []
    for s in real_slices[::5]:
        lungs, lesions = realslices.segment_real_slice(s)
        assert set(np.unique(lungs)) <= {0, 1, 2} and not lesions[lungs == 0].any()
        inside += int(((s.labels > 0) & (lungs > 0)).sum())
        total += int((s.labels > 0).sum())
        dices.append(realslices.slice_metrics(lesions, s.labels, lungs)["dice"])
    assert inside / total >= 0.98  # consolidated and ground-glass lung is lung
    assert np.mean(dices) > 0.7


@pytest.mark.slow
def test_brighter_export_does_not_turn_lung_into_ggo(real_slices):
    """A brighter export of the same slice (another window: grey x 1.15 + 0.06) must not add much lesion."""
    from workbench.segmentation import realslices

    added = []
    for s in real_slices[1::6]:
        _, base = realslices.segment_real_slice(s)
        bright = realslices.RealSlice(s.name, np.clip(s.image01 * 1.15 + 0.06, 0, 1), s.labels, s.lungs)
        _, les = realslices.segment_real_slice(bright)
        healthy = s.labels == 0
        added.append(float(((les > 0) & healthy).sum() - ((base > 0) & healthy).sum()) / healthy.sum())
    assert np.mean(added) < 0.02  # < 2 % of the healthy pixels newly called lesion


def test_healthy_phantom_has_almost_no_lesion():
    """The lesion-free sample case: < 10 mL of lesion and severity score 0 with the shipped method."""
    from workbench.biomarkers import extract_biomarkers
    from workbench.io import load_ct
    from workbench.paths import sample_data_dir
    from workbench.segmentation.lungs import segment_lungs

    ct = load_ct(sample_data_dir() / "cases" / "phantom_none.nii.gz")
    lungs = segment_lungs(ct)
    for method, max_ml in (("unet", 10.0), ("threshold", HEALTHY_THRESHOLD_MAX_ML)):
        les = segment_lesions(ct, lungs, method=method)
        v = extract_biomarkers(ct, lungs, les)
        assert v["lesion_volume_ml"] < max_ml, (method, v["lesion_volume_ml"])
        assert v["ct_severity_score"] == 0.0, method


def test_empty_lung_mask_gives_zeros(toy):
    ct, lungs, _ = toy
    for method in ("threshold", "unet"):
        out = segment_lesions(ct, np.zeros_like(lungs), method=method)
        assert out.shape == ct.shape and not out.any()


def test_bad_inputs_raise_workbench_errors(toy, tmp_path):
    ct, lungs, _ = toy
    with pytest.raises(MaskMismatch):
        segment_lesions(ct, lungs[:-1])
    with pytest.raises(InvalidInput):
        segment_lesions(ct, lungs, method="magic")
    with pytest.raises(ModelError):
        networks.load_lesion_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        networks.load_lesion_model(bad)


def test_inference_runs_on_cpu(toy, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert networks.device().type == "cpu"
    ct, lungs, _ = toy
    out = segment_lesions(ct, lungs, method="unet")
    assert out.shape == ct.shape


def test_the_lesion_decision_is_the_one_its_selection_chose():
    """networks.LESION_DECISION is what train.select_lesion_decision (stored with the weights) chose: the best
    cross-validated Dice among the candidates that keep the healthy phantom under 10 mL; its nested estimate
    (each fold scored with the choice made on the other folds) is reported, not only the chosen one."""
    meta = json.loads(networks.DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    sel = meta["cv"]["lesion_decision"]
    assert sel["chosen"] == networks.LESION_DECISION
    assert sorted(sel["candidates"]) == sorted(networks.LESION_DECISION_CANDIDATES)
    feasible = [t for t in sel["candidates"] if sel["healthy_phantom_ml"][str(t)] < sel["healthy_phantom_max_ml"]]
    assert networks.LESION_DECISION in feasible
    assert sel["cv_dice"][str(networks.LESION_DECISION)] == max(sel["cv_dice"][str(t)] for t in feasible)
    assert len(sel["nested_choices"]) == 5 and sel["nested_dice"] >= CV_FLOORS["dice"]
    card = networks.DEFAULT_WEIGHTS.with_suffix(".md").read_text()
    assert f"is Dice **{sel['nested_dice']:.3f}**" in card


def test_a_temporary_lesion_decision_changes_the_lesions_only_inside_its_block(toy):
    """networks.lesion_decision(t) (offline threshold tuning) decodes at t inside the block, then restores the
    shipped decision and forgets the class maps computed at t, even when the block fails."""
    ct, lungs, _ = toy
    decision = networks.LESION_DECISION
    shipped = segment_lesions(ct, lungs, method="unet")
    with networks.lesion_decision(0.95):
        strict = segment_lesions(ct, lungs, method="unet")
    assert (strict > 0).sum() < (shipped > 0).sum()  # a higher bar keeps fewer lesion voxels
    np.testing.assert_array_equal(segment_lesions(ct, lungs, method="unet"), shipped)
    with pytest.raises(RuntimeError), networks.lesion_decision(0.95):
        raise RuntimeError("a failed tuning run")
    assert networks.LESION_DECISION == decision
    np.testing.assert_array_equal(segment_lesions(ct, lungs, method="unet"), shipped)


def _ci_text(stat: dict) -> str:
    return f"{stat['mean']:.3f} ({stat['ci95'][0]:.3f}–{stat['ci95'][1]:.3f})"


def test_readme_quotes_the_shipped_cross_validation():
    """README's real-slice row quotes the figures stored with the shipped weights (lesion_unet.json)."""
    from workbench.paths import models_dir

    meta = json.loads(networks.DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    cv = meta["cv"]
    readme = (models_dir().parents[1] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("|") and "COVID-SemiSeg" in line and "CV" in line]
    assert len(rows) == 1, rows
    row = rows[0]
    s, thr, teacher = cv["summary"], cv["threshold_summary"], cv["teacher_summary"]
    for key in ("dice", "ggo_dice", "consolidation_dice"):
        assert _ci_text(s[key]) in row, key
    assert _ci_text(thr["dice"]) in row and f"{teacher['dice']['mean']:.3f}" in row
    assert f"{s['sensitivity']['mean']:.3f}" in row and f"{s['specificity']['mean']:.3f}" in row
    assert f"{s['lesion_inside_lung_pct']['mean']:.1f} %" in row and f"{cv['pooled_inside_pct']:.1f} %" in row
