"""Evaluation metrics against hand computations, sklearn and a slow reference DeLong."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from workbench.errors import WorkbenchError
from workbench.evaluation import (
    age_bands,
    auc,
    auc_ci,
    bootstrap_compare,
    calibration,
    decision_curve,
    delong_test,
    metrics_at_threshold,
    operating_point,
    roc,
    subgroup_metrics,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.35).astype(int)
    score = y * 1.2 + rng.normal(0, 1, n)
    p_good = 1 / (1 + np.exp(-(score - 0.8)))
    p_weak = 1 / (1 + np.exp(-(0.4 * score + rng.normal(0, 1, n) - 0.5)))
    return y, p_good, p_weak


def test_auc_and_ci(data):
    y, p, _ = data
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p))
    r = auc_ci(y, p, n_bootstrap=1000, seed=1)
    assert r.ci_low < r.auc < r.ci_high
    assert 0.05 < r.ci_high - r.ci_low < 0.2  # sane width for n=400
    assert auc_ci(y, p, seed=1) == r  # reproducible
    # the bootstrap SE agrees with DeLong's analytic SE of a single AUC
    de = delong_test(y, p, np.zeros_like(p) + 0.5)
    assert (r.ci_high - r.ci_low) / 3.92 == pytest.approx(de.se, rel=0.25)
    assert "95% CI" in str(r)
    with pytest.raises(WorkbenchError):
        auc_ci(np.zeros(10), np.linspace(0, 1, 10))
    with pytest.raises(WorkbenchError, match="missing"):
        auc(y, np.where(np.arange(len(p)) == 0, np.nan, p))


def test_roc_curve(data):
    y, p, _ = data
    c = roc(y, p)
    assert c["tpr"].is_monotonic_increasing and c["fpr"].iloc[-1] == 1
    assert np.trapezoid(c["tpr"], c["fpr"]) == pytest.approx(auc(y, p))


def test_metrics_at_threshold_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.4, 0.6])
    m = metrics_at_threshold(y, p, 0.5)
    assert (m.tp, m.fp, m.tn, m.fn) == (3, 1, 3, 1)
    assert m.sensitivity == 0.75 and m.specificity == 0.75 and m.ppv == 0.75 and m.npv == 0.75
    assert m.accuracy == 0.75
    np.testing.assert_array_equal(m.confusion_matrix, [[3, 1], [1, 3]])


def test_operating_points(data):
    y, p, _ = data
    yo = operating_point(y, p, "youden")
    grid = [metrics_at_threshold(y, p, t) for t in np.unique(p)]
    assert yo.sensitivity + yo.specificity == pytest.approx(max(o.sensitivity + o.specificity for o in grid))
    s90 = operating_point(y, p, "sensitivity", target=0.9)
    assert s90.sensitivity >= 0.9
    assert metrics_at_threshold(y, p, np.min(p[p > s90.threshold])).sensitivity < 0.9  # highest such threshold
    sp90 = operating_point(y, p, "specificity", target=0.9)
    assert sp90.specificity >= 0.9 and sp90.sensitivity < yo.sensitivity
    with pytest.raises(WorkbenchError, match="target"):
        operating_point(y, p, "sensitivity")
    with pytest.raises(WorkbenchError, match="Unknown"):
        operating_point(y, p, "f1")


def test_calibration():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.02, 0.98, 5000)
    y = (rng.random(5000) < p).astype(int)
    cal = calibration(y, p)
    assert len(cal.curve) == 10 and np.allclose(cal.curve["observed"], cal.curve["mean_predicted"], atol=0.06)
    assert abs(cal.intercept) < 0.1 and cal.slope == pytest.approx(1, abs=0.1)
    assert cal.brier == pytest.approx(np.mean((p - y) ** 2))
    # an overconfident model: slope < 1
    lp = np.log(p / (1 - p))
    over = calibration(y, 1 / (1 + np.exp(-2 * lp)))
    assert over.slope == pytest.approx(0.5, abs=0.08) and over.brier > cal.brier


def test_decision_curve(data):
    y, p, _ = data
    dc = decision_curve(y, p, thresholds=[0.1, 0.3, 0.5])
    prev = y.mean()
    assert dc.loc[0, "net_benefit_all"] == pytest.approx(prev - (1 - prev) * 0.1 / 0.9)
    pred = p >= 0.3
    nb = ((pred & (y == 1)).sum() - (pred & (y == 0)).sum() * 0.3 / 0.7) / len(y)
    assert dc.loc[1, "net_benefit_model"] == pytest.approx(nb)
    full = decision_curve(y, p)
    mid = full[(full.threshold > 0.2) & (full.threshold < 0.6)]
    assert (mid.net_benefit_model >= mid.net_benefit_all).all() and (mid.net_benefit_model > 0).all()


def _slow_delong(y, pa, pb):
    """Textbook DeLong (1988) with O(m n) structural components."""

    def comps(p):
        x, z = p[y == 1], p[y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    a, v10a, v01a = comps(pa)
    b, v10b, v01b = comps(pb)
    m, n = (y == 1).sum(), (y == 0).sum()
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    s = s10 / m + s01 / n
    return a - b, np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])


def test_delong_matches_reference(data):
    y, pa, pb = data
    pb = np.round(pb, 2)  # ties exercise the mid-ranks
    r = delong_test(y, pa, pb)
    d, se = _slow_delong(y, pa, pb)
    assert r.difference == pytest.approx(d) and r.se == pytest.approx(se, rel=1e-9)
    assert r.auc_a == pytest.approx(roc_auc_score(y, pa)) and r.auc_b == pytest.approx(roc_auc_score(y, pb))
    assert r.p_value < 0.01 and r.ci_low > 0
    same = delong_test(y, pa, pa)
    assert same.difference == 0 and same.p_value == 1
    bs = bootstrap_compare(y, pa, pb, n_bootstrap=800, seed=0)
    assert bs.difference == pytest.approx(r.difference)
    assert bs.se == pytest.approx(r.se, rel=0.25) and bs.ci_low > 0


def test_subgroups(data):
    y, p, _ = data
    n = len(y)
    groups = {"centre": np.where(np.arange(n) % 2, "A", "B"), "age_band": age_bands(np.linspace(20, 90, n))}
    df = subgroup_metrics(y, p, groups, threshold=0.5, n_bootstrap=200)
    assert set(df["variable"]) == {"centre", "age_band"}
    assert df[df.variable == "centre"]["n"].sum() == n
    a = df[(df.variable == "centre") & (df.level == "A")].iloc[0]
    m = np.arange(n) % 2 == 1
    assert a["auc"] == pytest.approx(roc_auc_score(y[m], p[m]))
    assert a["sensitivity"] == pytest.approx(metrics_at_threshold(y[m], p[m], 0.5).sensitivity)
    assert set(age_bands([30, 55, 70, 85])) == {"<50", "50-64", "65-79", "80+"}
    one_class = subgroup_metrics(y, p, {"g": np.where(y == 1, "pos", "neg")}, n_bootstrap=50)
    assert one_class["auc"].isna().all()
