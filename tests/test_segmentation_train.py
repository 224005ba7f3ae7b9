"""Training machinery of the chest network and the real-slice evaluation: folds, augmentation, loss,
determinism, metrics. (The trained model's accuracy is checked in test_segmentation_lesions.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shared_path

from workbench.segmentation import networks as nw
from workbench.segmentation import realslices as rs
from workbench.segmentation import train as tr


@pytest.fixture(scope="module")
def slices():
    shared_path("covid_semiseg_train", "multiclass", "Imgs")
    return rs.load_real_slices()


def test_near_duplicates_share_a_fold(slices):
    groups = rs.near_duplicate_groups(slices)
    multi = [set(g) for g in groups if len(g) > 1]
    assert {"10", "43"} in multi  # the pair the issue found (r = 0.995)
    folds = rs.cv_folds(slices)
    assert len(folds) == 5 and all(len(f) == 10 for f in folds)
    assert sorted(n for f in folds for n in f) == sorted(s.name for s in slices)
    for g in multi:
        assert sum(bool(g & set(f)) for f in folds) == 1
    assert rs.cv_folds(slices) == folds  # deterministic


def test_exported_slices_are_used_whole_and_labels_follow(slices):
    s = slices[0]
    x, y = rs.network_pair(s.image01, rs.four_class_label(s))
    assert x.shape == y.shape == (nw.IN_PLANE_SIZE, nw.IN_PLANE_SIZE)
    assert set(np.unique(y)) <= {0, 1, 2, 3}
    # the chest box of an export is the whole image (tissue along its edges)
    h, w = s.image01.shape
    assert nw.chest_box(s.hu[None], (5.0, 0.75, 0.75))[2] == max(h, w)
    # lung label = aerated lung ∪ lesion
    lab4 = rs.four_class_label(s)
    assert np.all(lab4[s.labels > 0] >= nw.GGO)


def test_unlabeled_orientation():
    img = np.arange(12).reshape(3, 4)
    assert np.array_equal(rs.orient_unlabeled(img, "Data-1_coronacases_org_001"), np.rot90(img, 1))
    assert np.array_equal(rs.orient_unlabeled(img, "Data-1_radiopaedia_org_x"), img.T)
    with pytest.raises(ValueError):
        rs.orient_unlabeled(img, "other")


def test_augmentation_keeps_labels_aligned_and_is_seeded():
    x = torch.zeros(4, 1, 64, 64)
    y = torch.zeros(4, 64, 64, dtype=torch.long)
    x[:, :, 20:40, 10:30] = 0.8
    y[:, 20:40, 10:30] = 3
    xa, ya = tr.augment_batch(x, y, torch.Generator().manual_seed(1))
    xb, yb = tr.augment_batch(x, y, torch.Generator().manual_seed(1))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert xa.shape == x.shape and ya.shape == y.shape and 0.0 <= float(xa.min()) and float(xa.max()) <= 1.0
    assert set(ya.unique().tolist()) <= {0, 3}
    for i in range(4):  # the bright square moves with its label
        assert float(xa[i, 0][ya[i] == 3].mean()) > float(xa[i, 0][ya[i] == 0].mean()) + 0.2


def test_loss_ignores_unconfident_pseudo_labels():
    logits = torch.randn(2, 4, 16, 16)
    target = torch.randint(0, 4, (2, 16, 16))
    ignored = target.clone()
    ignored[:, :8] = tr.IGNORE
    # ignoring the upper half = computing the loss on the lower half only
    assert torch.isclose(tr.dice_ce_loss(logits, ignored), tr.dice_ce_loss(logits[:, :, 8:], target[:, 8:]))
    assert not torch.isclose(tr.dice_ce_loss(logits, ignored), tr.dice_ce_loss(logits, target))


def test_training_is_deterministic(slices):
    x, y = tr.labeled_pairs(slices[:4], size=64)
    cfg = tr.TrainConfig(teacher_iterations=2, student_iterations=2, batch_size=2, size=64, use_phantoms=False)
    unlabeled = (x * 255).astype(np.uint8)
    quiet = lambda *_a: None  # noqa: E731
    net1, info1 = tr.fit_network((x, y), cfg, unlabeled=unlabeled, log=quiet)
    net2, _ = tr.fit_network((x, y), cfg, unlabeled=unlabeled, log=quiet)
    for (k, a), b in zip(net1.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), k
    assert "student_loss" in info1 and 0.0 <= info1["pseudo_label_kept_fraction"] <= 1.0


def test_slice_metrics_hand_checked():
    labels = np.zeros((10, 10), np.uint8)
    labels[2:6, 2:6] = 1  # 16 GGO pixels
    labels[6:8, 2:6] = 2  # 8 consolidation pixels
    pred = np.zeros_like(labels)
    pred[2:6, 2:6] = 1  # GGO exact
    pred[6:8, 2:4] = 2  # half of the consolidation
    lungs = np.zeros_like(labels)
    lungs[:, :5] = 1  # holds 16 + ... of the 24 lesion pixels
    m = rs.slice_metrics(pred, labels, lungs)
    assert m["dice"] == pytest.approx(2 * 20 / (20 + 24))
    assert m["sensitivity"] == pytest.approx(20 / 24)
    assert m["specificity"] == pytest.approx(1.0)
    assert m["ggo_dice"] == pytest.approx(1.0) and m["consolidation_dice"] == pytest.approx(2 * 4 / 12)
    assert m["lesion_inside_lung_pct"] == pytest.approx(100 * 18 / 24)
    assert m["hd95_px"] >= 0
    per = {str(i): dict(m, dice=0.5 + 0.01 * i) for i in range(20)}
    s = rs.summarize(per)
    assert s["dice"]["ci95"][0] <= s["dice"]["mean"] <= s["dice"]["ci95"][1] and s["dice"]["n"] == 20


@pytest.mark.slow
def test_unlabeled_slices_load_in_ct_orientation():
    shared_path("covid_semiseg_unlabeled", "Imgs")
    images, volumes = rs.load_unlabeled_images(size=64)
    assert images.shape == (1600, 64, 64) and images.dtype == np.uint8 and len(set(volumes)) == 20
    # spine at the bottom: the lower rows are brighter (bone, back muscles) than the upper ones on average
    assert images[:, 48:, 24:40].mean() > images[:, :16, 24:40].mean()
