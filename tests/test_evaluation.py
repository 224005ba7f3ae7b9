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
    binary_metrics,
    bootstrap_compare,
    calibration,
    choose_threshold,
    crossfit_thresholds,
    decision_curve,
    delong_test,
    evaluate_models,
    expected_f1,
    metrics_at_threshold,
    multiclass_metrics,
    operating_point,
    recalibrate,
    roc,
    subgroup_metrics,
    threshold_metrics_ci,
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


# --------------------------------------------------------------------------- F1, balanced accuracy, CIs
def test_f1_and_balanced_accuracy_by_hand():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1])
    op = metrics_at_threshold(y, p, 0.5)  # tp 3, fn 1, fp 1, tn 5
    assert op.f1 == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert op.balanced_accuracy == pytest.approx((3 / 4 + 5 / 6) / 2)
    from sklearn.metrics import balanced_accuracy_score, f1_score

    assert op.f1 == pytest.approx(f1_score(y, p >= 0.5))
    assert op.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, p >= 0.5))
    none = metrics_at_threshold(y, p, 0.99)  # nobody flagged: PPV undefined, F1 0
    assert np.isnan(none.ppv) and none.f1 == 0.0


def test_threshold_metrics_ci_brackets_the_estimates(data):
    y, p, _ = data
    op = metrics_at_threshold(y, p, 0.4)
    cis = threshold_metrics_ci(y, p, 0.4, n_bootstrap=500, seed=0, prevalence=0.1)
    for name in ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy"):
        lo, hi = cis[name]
        assert lo <= getattr(op, name) <= hi and hi - lo < 0.25, name
    lo, hi = cis["expected_f1"]
    assert lo <= expected_f1(op.sensitivity, op.specificity, 0.1) <= hi
    # the same seed gives the same interval; stratified: sensitivity only moves with the events
    assert threshold_metrics_ci(y, p, 0.4, n_bootstrap=500, seed=0) == {
        k: v for k, v in cis.items() if k != "expected_f1"
    }


def test_expected_f1_at_the_sample_prevalence_is_the_f1(data):
    y, p, _ = data
    op = metrics_at_threshold(y, p, 0.5)
    assert expected_f1(op.sensitivity, op.specificity, y.mean()) == pytest.approx(op.f1)
    # rarer outcome, same sensitivity and specificity: fewer true positives per false positive
    assert expected_f1(op.sensitivity, op.specificity, 0.05) < op.f1


@pytest.mark.parametrize("rule", ["max_f1", "max_f1_at_prevalence:0.1", "youden"])
def test_threshold_rules_agree_with_brute_force(data, rule):
    y, p, _ = data
    best = choose_threshold(y, p, rule)
    ops = [metrics_at_threshold(y, p, t) for t in np.unique(p)]
    score = {
        "max_f1": lambda o: o.f1,
        "max_f1_at_prevalence:0.1": lambda o: expected_f1(o.sensitivity, o.specificity, 0.1),
        "youden": lambda o: o.sensitivity + o.specificity,
    }[rule]
    assert score(best) == pytest.approx(max(score(o) for o in ops))
    assert choose_threshold(y, p, "sensitivity:0.9").sensitivity >= 0.9
    assert choose_threshold(y, p, "specificity:0.95").specificity >= 0.95
    # a low expected prevalence asks for a stricter (higher) threshold than the sample's own
    assert choose_threshold(y, p, "max_f1_at_prevalence:0.05").threshold >= choose_threshold(y, p, "max_f1").threshold


def test_unknown_threshold_rules_say_what_is_allowed(data):
    y, p, _ = data
    with pytest.raises(WorkbenchError, match="Unknown threshold rule 'median'.*youden"):
        choose_threshold(y, p, "median")
    with pytest.raises(WorkbenchError, match="needs a number"):
        choose_threshold(y, p, "sensitivity:high")
    with pytest.raises(WorkbenchError, match="between 0 and 1"):
        choose_threshold(y, p, "max_f1_at_prevalence:1.5")


def test_crossfit_thresholds_never_use_the_fold_itself(data):
    y, p, _ = data
    folds = np.arange(len(y)) % 5
    thr = crossfit_thresholds(y, p, folds, "youden")
    for k in range(5):
        assert len(set(thr[folds == k])) == 1
        assert thr[folds == k][0] == choose_threshold(y[folds != k], p[folds != k], "youden").threshold
    # scrambling fold 0's own predictions does not move fold 0's threshold
    p2 = p.copy()
    p2[folds == 0] = np.random.default_rng(1).random((folds == 0).sum())
    assert crossfit_thresholds(y, p2, folds, "youden")[folds == 0][0] == thr[folds == 0][0]


# --------------------------------------------------------------------------- calibration, recalibration
def test_calibration_of_extreme_risks_raises_no_warning():
    """The published rule predicts exactly 0 or 1: the calibration fit must not overflow."""
    import warnings

    y = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0])
    p = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cal = calibration(y, p)
    assert np.isfinite(cal.intercept) and np.isfinite(cal.brier)


def test_recalibration_recovers_a_known_shift():
    rng = np.random.default_rng(3)
    lp = rng.normal(0, 1.5, 4000)
    p_model = 1 / (1 + np.exp(-lp))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(-1.5 + 0.7 * lp)))).astype(int)  # outcome rarer, effects weaker
    cal = calibration(y, p_model)
    assert cal.intercept < -1.0 and cal.slope == pytest.approx(0.7, abs=0.1)
    assert cal.mean_predicted > cal.observed_rate
    rec = recalibrate(y, p_model, "logistic")
    assert rec.intercept == pytest.approx(-1.5, abs=0.15) and rec.slope == pytest.approx(0.7, abs=0.1)
    after = calibration(y, rec.apply(p_model))
    assert after.intercept == pytest.approx(0, abs=1e-6) and after.slope == pytest.approx(1, abs=1e-3)
    large = recalibrate(y, p_model, "in-the-large")
    assert large.slope == 1.0 and large.intercept == pytest.approx(cal.intercept)
    with pytest.raises(WorkbenchError, match="Unknown recalibration"):
        recalibrate(y, p_model, "isotonic")


# --------------------------------------------------------------------------- the one metrics table
def test_evaluate_models_is_one_deterministic_table(data):
    y, p_good, p_weak = data
    preds = {"good": p_good, "weak": p_weak}
    table = evaluate_models(y, preds, n_bootstrap=300, seed=2, info={"good": {"description": "G"}})
    again = evaluate_models(y, preds, n_bootstrap=300, seed=2, info={"good": {"description": "G"}})
    assert table.to_csv(index=False) == again.to_csv(index=False)
    assert list(table["model"]) == ["good", "weak"] and list(table.columns[:2]) == ["model", "description"]
    for col in ("auc", "auc_ci_low", "f1", "f1_ci_low", "balanced_accuracy_ci_high", "threshold", "brier"):
        assert col in table.columns
    good = table.set_index("model").loc["good"]
    assert good["auc"] == pytest.approx(auc(y, p_good))
    assert good["threshold"] == operating_point(y, p_good).threshold  # Youden by default
    assert np.isnan(good["delong_p_vs_best"]) and table.set_index("model").loc["weak", "delong_p_vs_best"] < 0.05
    fixed = evaluate_models(y, preds, thresholds={"good": 0.5}, n_bootstrap=300).set_index("model")
    assert fixed.loc["good", "threshold"] == 0.5 and fixed.loc["good", "threshold_rule"] == "given"
    row = binary_metrics(y, p_good, threshold=0.5, n_bootstrap=300)
    assert row["f1"] == pytest.approx(metrics_at_threshold(y, p_good, 0.5).f1)


# --------------------------------------------------------------------------- multi-class
def test_multiclass_metrics_per_class_and_balanced_accuracy():
    rng = np.random.default_rng(0)
    y = np.repeat(["mild", "moderate", "severe"], [200, 100, 50])
    centre = {"mild": 0, "moderate": 1, "severe": 2}
    z = np.array([centre[v] for v in y]) + rng.normal(0, 0.6, len(y))
    logits = -((z[:, None] - np.arange(3)[None, :]) ** 2)
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    res = multiclass_metrics(y, P, ["mild", "moderate", "severe"], n_bootstrap=200)
    from sklearn.metrics import balanced_accuracy_score, f1_score

    pred = np.array(["mild", "moderate", "severe"])[P.argmax(axis=1)]
    assert res["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert res["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    per = res["per_class"].set_index("class")
    assert per.loc["severe", "n"] == 50 and 0.5 < per.loc["severe", "auc"] <= 1
    assert res["confusion_matrix"].sum() == len(y) and res["confusion_matrix"].shape == (3, 3)
    lo, hi = res["balanced_accuracy_ci"]
    assert lo < res["balanced_accuracy"] < hi
    with pytest.raises(WorkbenchError, match="not classes of the model"):
        multiclass_metrics(np.append(y[:-1], "critical"), P, ["mild", "moderate", "severe"])


def test_classification_metrics_multiclass_matches_sklearn():
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

    from workbench.evaluation import classification_metrics

    rng = np.random.default_rng(0)
    y = rng.choice(3, 300, p=[0.7, 0.2, 0.1])
    P = rng.dirichlet([1, 1, 1], 300)
    P[np.arange(300), y] += 0.6
    P /= P.sum(axis=1, keepdims=True)
    m = classification_metrics(y, P, ["non_severe", "IOT", "DCD"], n_bootstrap=300)
    assert m.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, P.argmax(axis=1)))
    np.testing.assert_allclose(list(m.auc.values()), roc_auc_score(y, P, multi_class="ovr", average=None))
    np.testing.assert_array_equal(m.confusion, confusion_matrix(y, P.argmax(axis=1)))
    assert all(lo <= hi for lo, hi in m.ci.values())
    lo, hi = m.ci["balanced_accuracy"]
    assert lo < m.balanced_accuracy < hi and hi - lo < 0.25
    spec = ((P.argmax(axis=1) != 2) & (y != 2)).sum() / (y != 2).sum()
    assert m.specificity["DCD"] == pytest.approx(spec)
    assert "true DCD" in m.confusion_table().index
    assert m.as_dict()["confusion"] == m.confusion.tolist()


def test_classification_metrics_binary_threshold():
    from workbench.evaluation import classification_metrics

    y = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1, 0])
    p1 = np.array([0.1, 0.2, 0.3, 0.45, 0.4, 0.7, 0.9, 0.6, 0.35, 0.05])
    m = classification_metrics(
        y, np.column_stack([1 - p1, p1]), ["non_severe", "severe"], threshold=0.4, n_bootstrap=50
    )
    op = metrics_at_threshold(y, p1, 0.4)
    assert m.sensitivity["severe"] == pytest.approx(op.sensitivity)
    assert m.specificity["severe"] == pytest.approx(op.specificity)
    assert m.balanced_accuracy == pytest.approx((op.sensitivity + op.specificity) / 2)
    assert m.auc["severe"] == pytest.approx(auc(y, p1)) and m.auc["non_severe"] == pytest.approx(m.auc["severe"])
    assert m.threshold == 0.4
    with pytest.raises(WorkbenchError, match="two outcome classes"):
        classification_metrics(np.zeros(5, int), np.full((5, 2), 0.5))
