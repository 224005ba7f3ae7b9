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
def real_eval():
    shared_path("covid_semiseg_train", "multiclass", "Imgs")
    from workbench.segmentation.train import evaluate_real

    net, _ = networks.load_lesion_model()
    return {
        "unet": evaluate_real(net, method="unet"),
        "threshold": evaluate_real(None, method="threshold"),
        "unet_gt": evaluate_real(net, method="unet", lung_mask="auto+gt"),
    }


def test_shipped_model_loads_offline_with_metadata():
    net, meta = networks.load_lesion_model()
    assert isinstance(net, torch.nn.Module) and not net.training
    assert meta["classes"] == ["background", "ggo", "consolidation"]
    assert meta["in_plane_size"] == networks.IN_PLANE_SIZE and meta["window_hu"] == list(networks.WINDOW_HU)
    assert len(meta["held_out_slices"]) == 10 and not set(meta["held_out_slices"]) & set(meta["real_train_slices"])
    # the sidecar records the sha256 of exactly the shipped weights
    side = json.loads(networks.DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert side["weights_sha256"] == hashlib.sha256(networks.DEFAULT_WEIGHTS.read_bytes()).hexdigest()
    assert networks.DEFAULT_WEIGHTS.stat().st_size < 10e6
    assert networks.load_lesion_model()[0] is net  # cached in-process


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
def test_unet_beats_threshold_on_held_out_real_slices(real_eval):
    # 10 real slices never used for training; automatic 2D lung mask for both methods.
    unet, thr = real_eval["unet"]["mean_per_slice"], real_eval["threshold"]["mean_per_slice"]
    assert thr["lesion"] > 0.35  # the baseline is a real baseline, not a strawman
    assert unet["lesion"] > 0.45
    assert unet["lesion"] > thr["lesion"] + 0.05
    wins = sum(
        real_eval["unet"]["per_slice"][n]["lesion"] > real_eval["threshold"]["per_slice"][n]["lesion"]
        for n in real_eval["unet"]["per_slice"]
    )
    assert wins >= 5  # better on at least half of the slices, not only on average
    assert real_eval["unet"]["pooled"]["ggo"] > real_eval["threshold"]["pooled"]["ggo"]
    # with a lung mask that contains all lesions the network reaches a higher overlap
    assert real_eval["unet_gt"]["pooled"]["lesion"] > 0.55


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
