"""Correlated features explained together.

SHAP splits the credit of one piece of information between every feature that carries it. On a
cohort with many correlated measures (lesion %, lesion volume, extents, CT severity score ...)
the strongest true driver can then fall out of a per-feature top 15 while uncorrelated noise
ranks high, and near-collinear features (red cells, haemoglobin, haematocrit) can get large
attributions of opposite sign that cancel. Summing each patient's SHAP values over a group of
strongly correlated features (SHAP values are additive, so the sum is the group's attribution)
gives the group its whole credit and cancels such pairs.

``correlated_groups(X)`` clusters features by their absolute Spearman correlation (average
linkage, groups whose members correlate at ``|rho| >= min_abs_rho`` on average);
``grouped_attributions(values, groups)`` sums SHAP values per group (one column per group,
named after its most important member) and ``group_members`` says who is in each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: features correlated at least this strongly (|Spearman rho|, average linkage) form a group
MIN_ABS_RHO = 0.7


def correlated_groups(X: pd.DataFrame, *, min_abs_rho: float = MIN_ABS_RHO) -> list[list[str]]:
    """Groups of strongly correlated columns of ``X`` (each column in exactly one group).

    Distance ``1 - |Spearman rho|`` (pairwise complete observations; a pair without enough
    overlap counts as uncorrelated), average-linkage clustering cut at ``1 - min_abs_rho``.
    Groups are returned largest first; each group's first member is its most central one (the
    highest mean |rho| with the others: the feature that best stands for the group), the others
    follow in ``X``'s column order.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    cols = list(X.columns)
    if len(cols) < 2:
        return [cols] if cols else []
    num = X.apply(pd.to_numeric, errors="coerce")
    rho = num.rank().corr(min_periods=10).abs().to_numpy()
    rho = np.nan_to_num(rho, nan=0.0)
    dist = 1.0 - np.clip(rho, 0.0, 1.0)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2.0
    labels = fcluster(linkage(squareform(dist, checks=False), "average"), 1.0 - min_abs_rho, "distance")
    groups: dict[int, list[str]] = {}
    for col, lab in zip(cols, labels):
        groups.setdefault(int(lab), []).append(col)
    out = []
    for g in groups.values():
        idx = [cols.index(c) for c in g]
        centre = g[int(np.argmax(rho[np.ix_(idx, idx)].mean(axis=1)))]
        out.append([centre] + [c for c in g if c != centre])
    return sorted(out, key=lambda g: (-len(g), cols.index(g[0])))


def grouped_attributions(
    values: pd.DataFrame, groups: Sequence[Sequence[str]], *, names: dict[str, str] | None = None
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Each patient's SHAP values summed within each group.

    Args:
        values: SHAP values, one row per patient, one column per feature.
        groups: from :func:`correlated_groups` (features of ``values`` not in any group stay alone).
        names: optional display names of features (used to name the groups).

    Returns:
        ``(table, members)``: ``table`` has one column per group, named after the group's first
        (most central) member (``"<name> + 3 correlated"``), ordered by mean |group SHAP|;
        ``members`` maps each column name to its features (that member, then the most important).
    """
    names = names or {}
    importance = values.abs().mean()
    seen = {f for g in groups for f in g}
    all_groups = [list(g) for g in groups if any(f in values.columns for f in g)]
    all_groups += [[f] for f in values.columns if f not in seen]
    out: dict[str, pd.Series] = {}
    members: dict[str, list[str]] = {}
    for g in all_groups:
        g = [f for f in g if f in values.columns]
        g = g[:1] + sorted(g[1:], key=lambda f: -importance[f])
        lead = names.get(g[0], g[0])
        name = lead if len(g) == 1 else f"{lead} + {len(g) - 1} correlated"
        out[name] = values[g].sum(axis=1)
        members[name] = g
    table = pd.DataFrame(out, index=values.index)
    order = table.abs().mean().sort_values(ascending=False).index
    return table[order], {k: members[k] for k in order}


def group_data(data: pd.DataFrame, members: dict[str, list[str]]) -> pd.DataFrame:
    """A value per patient and group for colouring grouped beeswarms: the first member's values."""
    return pd.DataFrame({name: data[feats[0]] for name, feats in members.items()}, index=data.index)


__all__ = ["MIN_ABS_RHO", "correlated_groups", "grouped_attributions", "group_data"]
