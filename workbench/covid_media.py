"""The Covid-MedIA cohort (Chassagnon et al., Med Image Anal 2021): loader, data-quality rules, product row.

The authors released each split as six CSV files in one folder, one row per patient, the first
(unnamed) column a patient index identical across files::

    dataset_clinical_<Split>.csv       Sex, Age, Disease_extent, HBP, Diabetes, Lymphocytes, CRP, Fat,
                                       Evolution, Evolution_3classes (labels may be absent)
    dataset_disease_left_<Split>.csv   107 PyRadiomics "original" features, names ending _disease_left
    dataset_disease_right_<Split>.csv  ... _disease_right
    dataset_lung_left_<Split>.csv      ... _lung_left
    dataset_lung_right_<Split>.csv     ... _lung_right
    dataset_heart_<Split>.csv          ... _heart

- :func:`load_covid_media` reads any split (``Train``, ``Test``, ...) into one patient table;
  :func:`is_covid_media_folder` says whether a folder holds that layout.
- :func:`data_quality_report` lists the data-quality problems of a table and what the rules do about
  them; :class:`CovidMediaQualityRules` is the fitted transform that applies those rules, identically
  to any split (it sits first in every model pipeline trained on this cohort, so a saved model
  applies it to the data it scores).
- :func:`encode_outcome` turns a label column into class indices; :func:`covid_media_row` builds the
  one-row table a model trained on this cohort expects from a scan's features and entered values.

The data carry no licence: read them from ``../shared/data/covid_media_train``
(:func:`workbench.paths.shared_dataset`), never copy them into the repository.

Data-quality rules (:class:`CovidMediaQualityRules`, defaults; every change is listed by the report):

1. **Mean imputation by the source.** A value that equals the column's mean in the file (6
   significant digits) and occurs at least 3 times, where the column otherwise holds rounded
   measurements, is the source's mean imputation (``Lymphocytes`` 11.099…, ``CRP`` 203.34…): set to
   NaN (missing). The constants found in the training table are remembered by ``fit`` and removed
   from any later table too (a split imputed with the training mean); a table of fewer than 20 rows
   (e.g. one patient entered in the app) is checked against the remembered constants only.
2. **Non-binary value in a 0/1 column** (``Sex``, ``HBP``, ``Diabetes``; e.g. HBP 0.439…, the
   column mean): set to NaN.
3. **Lymphocytes in another unit.** The column is in 10^9/L (median 1.1). An absolute count above
   5 x 10^9/L is very unusual in COVID-19 and values between 5 and 100 match a percentage of
   leukocytes (median ≈ 16), which cannot be converted without the leukocyte count: set to NaN.
   Values above 100 can only be cells/mm³ (= cells/µL): divided by 1000 (→ 10^9/L).
4. **Implausible CRP.** CRP above 600 mg/L (above the measuring range of usual assays and above
   any value reported in COVID-19 series; the file goes up to 27,633) is set to NaN.

Reported but kept: ``Fat`` (not defined by the source), missing values, and regions whose 107
features are all 0 (an empty mask: the source's convention, e.g. no disease in the right lung).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from workbench.errors import CohortError
from workbench.paths import shared_dataset
from workbench.radiomics import FEATURE_NAMES, REGIONS

#: folder name of the training split under ``../shared/data``
TRAIN_DATASET = "covid_media_train"
#: where the public data can be obtained (for messages when the folder is absent)
SOURCE = "Chassagnon G. et al., Med Image Anal 67:101860 (2021), data in the GitHub repository ebattistella/Covid-MedIA"

#: file parts: the clinical table and one radiomics table per region (:data:`REGIONS`, in the files' order)
PARTS: tuple[str, ...] = ("clinical", *REGIONS)
#: clinical columns: name -> (description, unit)
CLINICAL_COLUMNS: dict[str, tuple[str, str]] = {
    "Sex": ("sex, 0/1 (1 = male: 66 % of the cohort; the coding is not stated by the source)", ""),
    "Age": ("age", "years"),
    "Disease_extent": ("lesion volume as % of lung volume (authors' CNN segmentation)", "%"),
    "HBP": ("hypertension, 0/1", ""),
    "Diabetes": ("diabetes, 0/1", ""),
    "Lymphocytes": ("lymphocyte count", "10^9/L"),
    "CRP": ("C-reactive protein", "mg/L"),
    "Fat": ("not defined by the source (0.02-0.42, probably a fat fraction)", ""),
}
#: columns whose only valid values are 0 and 1
BINARY_COLUMNS: tuple[str, ...] = ("Sex", "HBP", "Diabetes")
#: label columns and their classes, in class-index order (index 0 = non-severe)
LABELS: dict[str, tuple[str, ...]] = {
    "Evolution": ("non_severe", "severe"),
    "Evolution_3classes": ("non_severe", "IOT", "DCD"),
}
#: readable class names
CLASS_NAMES: dict[str, str] = {
    "non_severe": "non-severe",
    "severe": "intubated or deceased within 4 days",
    "IOT": "intubated within 4 days",
    "DCD": "deceased within 4 days",
}
#: the 107 PyRadiomics "original" features of each region, without the region suffix (one home:
#: :mod:`workbench.radiomics`, which computes them from a scan)
RADIOMICS_FEATURES: tuple[str, ...] = FEATURE_NAMES
#: first-order features unchanged by any affine intensity rescaling (x -> a x + b, a > 0)
AFFINE_INVARIANT_FIRSTORDER: tuple[str, ...] = ("original_firstorder_Skewness", "original_firstorder_Kurtosis")

#: the product's clinical/biomarker names (``workbench.ui``/``biomarkers``) -> cohort column
PRODUCT_TO_COHORT: dict[str, str] = {
    "sex": "Sex",
    "age_years": "Age",
    "lesion_pct_lung": "Disease_extent",
    "hypertension": "HBP",
    "diabetes": "Diabetes",
    "lymphocytes_1e9_l": "Lymphocytes",
    "crp_mg_l": "CRP",
}

#: refuse files larger than this before reading them (the real ones are < 1.1 MB)
MAX_FILE_MB = 200
_FILE_RE = re.compile(r"^dataset_(clinical|disease_left|disease_right|lung_left|lung_right|heart)_([A-Za-z0-9]+)\.csv$")


def radiomics_columns(regions: Sequence[str] = REGIONS, features: Sequence[str] = RADIOMICS_FEATURES) -> list[str]:
    """Cohort column names ``<feature>_<region>`` (e.g. ``original_glcm_Correlation_heart``)."""
    bad = [r for r in regions if r not in REGIONS]
    if bad:
        raise CohortError(f"Unknown region(s) {bad}; the regions are {', '.join(REGIONS)}.")
    return [f"{f}_{r}" for r in regions for f in features]


def shape_columns(regions: Sequence[str] = REGIONS) -> list[str]:
    """The 14 shape features of each region (they depend on the masks only, not on intensities)."""
    return radiomics_columns(regions, [f for f in RADIOMICS_FEATURES if "_shape_" in f])


def affine_invariant_columns(regions: Sequence[str] = REGIONS) -> list[str]:
    """Skewness and kurtosis of each region: unchanged by a linear rescaling of the intensities."""
    return radiomics_columns(regions, AFFINE_INVARIANT_FIRSTORDER)


# --------------------------------------------------------------------------- files and splits
def _file_name(source: Any) -> str:
    return Path(str(getattr(source, "name", source))).name


def _split_files(folder_or_files: Any) -> dict[str, dict[str, Any]]:
    """split -> part -> source (a Path, or bytes / a file-like object for uploads)."""
    items: list[tuple[str, Any]] = []
    if isinstance(folder_or_files, (str, Path)):
        path = Path(folder_or_files)
        if not path.exists():
            raise CohortError(
                f"Covid-MedIA folder not found: {path}. The public data ({SOURCE}) go in a folder such as "
                f"{shared_dataset(TRAIN_DATASET)}."
            )
        if path.is_dir():
            items = [(p.name, p) for p in sorted(path.iterdir()) if p.is_file()]
        else:
            items = [(path.name, path)]
    elif isinstance(folder_or_files, Mapping):
        items = [(_file_name(k), v) for k, v in folder_or_files.items()]
    elif isinstance(folder_or_files, Sequence):
        items = [(_file_name(v), Path(v) if isinstance(v, str) else v) for v in folder_or_files]
    else:
        raise CohortError("Give a folder, a list of files or a {file name: content} mapping of the Covid-MedIA CSVs.")
    found: dict[str, dict[str, Any]] = {}
    for name, src in items:
        m = _FILE_RE.match(name)
        if m:
            found.setdefault(m.group(2), {})[m.group(1)] = src
    return found


def _choose_split(found: dict[str, dict[str, Any]], split: str | None) -> tuple[str, dict[str, Any]]:
    expected = ", ".join(f"dataset_{p}_<Split>.csv" for p in PARTS)
    if not found:
        raise CohortError(f"No Covid-MedIA files found. Expected six CSV files named {expected}.")
    if split is not None:
        match = [s for s in found if s.lower() == str(split).lower()]
        if not match:
            raise CohortError(f"No files of the split '{split}'. Splits present: {', '.join(sorted(found))}.")
        name = match[0]
    elif len(found) == 1:
        name = next(iter(found))
    else:
        complete = [s for s, parts in found.items() if set(parts) == set(PARTS)]
        if len(complete) != 1:
            raise CohortError(
                f"The files hold several splits ({', '.join(sorted(found))}); choose one, e.g. split='Train'."
            )
        name = complete[0]
    parts = found[name]
    missing = [f"dataset_{p}_{name}.csv" for p in PARTS if p not in parts]
    if missing:
        raise CohortError(f"Covid-MedIA split '{name}' is incomplete: missing {', '.join(missing)}.")
    return name, parts


def is_covid_media_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder holding the six CSV files of at least one split."""
    try:
        p = Path(path)
        if not p.is_dir():
            return False
        return any(set(parts) == set(PARTS) for parts in _split_files(p).values())
    except (OSError, CohortError):
        return False


def _read_bytes(src: Any, name: str) -> bytes:
    limit = MAX_FILE_MB * 1024 * 1024
    if isinstance(src, (str, Path)):
        path = Path(src)
        size = path.stat().st_size
        if size > limit:
            raise CohortError(f"{name} is {size / 2**20:.0f} MB, more than the {MAX_FILE_MB} MB a cohort file may be.")
        return path.read_bytes()
    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    else:
        data = src.read(limit + 1)
        if isinstance(data, str):
            data = data.encode()
    if len(data) > limit:
        raise CohortError(f"{name} is more than the {MAX_FILE_MB} MB a cohort file may be.")
    return data


def _read_part(src: Any, name: str) -> pd.DataFrame:
    data = _read_bytes(src, name)
    if not data.strip():
        raise CohortError(f"{name} is empty.")
    try:
        df = pd.read_csv(io.BytesIO(data), index_col=0)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
        raise CohortError(f"Could not read {name} as CSV: {exc}") from exc
    if df.shape[0] == 0:
        raise CohortError(f"{name} has no patient rows.")
    if df.index.hasnans or df.index.duplicated().any():
        dup = df.index[df.index.duplicated()]
        what = f"repeated index {dup[0]!r}" if len(dup) else "an empty index"
        raise CohortError(f"{name}: the first column must identify each patient once; found {what}.")
    return df


def _numeric(df: pd.DataFrame, columns: Sequence[str], name: str) -> pd.DataFrame:
    for col in columns:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s):
            continue
        num = pd.to_numeric(s, errors="coerce")
        bad = s[num.isna() & s.notna()]
        if len(bad):
            raise CohortError(f"{name}: column '{col}' has a non-numeric value ({bad.iloc[0]!r}, row {bad.index[0]}).")
        df[col] = num
    return df


def load_covid_media(
    folder_or_files: str | Path | Sequence[str | Path | IO] | Mapping[str, Any] | None = None,
    split: str | None = None,
) -> pd.DataFrame:
    """Load one split of the Covid-MedIA layout into one patient table.

    ``folder_or_files``: the folder (default: ``../shared/data/covid_media_train``), a list of the six
    file paths/uploaded files, or a mapping ``{file name: bytes or file object}``. ``split``: e.g.
    ``"Train"``/``"Test"``; needed only when the files hold several splits (it is read from the names).

    Returns a DataFrame indexed by the patient index (``patient_index``, as in the files) with the
    clinical columns (:data:`CLINICAL_COLUMNS`, ``Fat`` NaN when absent), the label columns present
    (:data:`LABELS`; a split without labels loads for scoring) and the 535 region features, named as
    in the files. ``df.attrs``: ``split``, ``labels`` (present label columns) and ``sha256`` (of the
    six files' bytes, for model provenance). Raw values: apply :class:`CovidMediaQualityRules` (every
    model trained here does) and see :func:`data_quality_report`.

    Raises :class:`CohortError` for a missing file, rows that differ between files, a column missing
    or non-numeric, or an unknown label.
    """
    if folder_or_files is None:
        folder_or_files = shared_dataset(TRAIN_DATASET)
    split_name, parts = _choose_split(_split_files(folder_or_files), split)
    digest = hashlib.sha256()
    tables: dict[str, pd.DataFrame] = {}
    for part in PARTS:
        name = f"dataset_{part}_{split_name}.csv"
        data = _read_bytes(parts[part], name)
        digest.update(data)
        tables[part] = _read_part(data, name)
    clinical = tables["clinical"]
    cname = f"dataset_clinical_{split_name}.csv"
    required = [c for c in CLINICAL_COLUMNS if c != "Fat"]
    missing = [c for c in required if c not in clinical.columns]
    if missing:
        raise CohortError(f"{cname} lacks the column(s) {missing}. Columns are: {list(clinical.columns)[:12]}.")
    if "Fat" not in clinical.columns:
        clinical["Fat"] = np.nan
    clinical = _numeric(clinical, list(CLINICAL_COLUMNS), cname)
    labels = [c for c in LABELS if c in clinical.columns]
    for label in labels:
        values = clinical[label]
        if values.isna().any():
            raise CohortError(f"{cname}: the label '{label}' is empty for {int(values.isna().sum())} patient(s).")
        unknown = sorted(set(values.astype(str)) - set(LABELS[label]))
        if unknown:
            raise CohortError(f"{cname}: unknown value(s) {unknown} in '{label}'; expected {', '.join(LABELS[label])}.")
        clinical[label] = values.astype(str)
    frames = [clinical[list(CLINICAL_COLUMNS) + labels]]
    for region in REGIONS:
        df = tables[region]
        name = f"dataset_{region}_{split_name}.csv"
        if len(df) != len(clinical) or not df.index.equals(clinical.index):
            differ = next(
                (i for i, (a, b) in enumerate(zip(df.index, clinical.index)) if a != b), min(len(df), len(clinical))
            )
            raise CohortError(
                f"The rows of {name} ({len(df)} patients) do not match {cname} ({len(clinical)} patients): "
                f"the patient index differs from row {differ + 1} on. Each file must list the same patients "
                "in the same order."
            )
        wrong = [c for c in df.columns if not str(c).endswith(f"_{region}")]
        if wrong:
            raise CohortError(f"{name}: column '{wrong[0]}' does not end with '_{region}'.")
        absent = [c for c in radiomics_columns([region]) if c not in df.columns]
        if absent:
            raise CohortError(f"{name} lacks {len(absent)} of the 107 PyRadiomics features, e.g. '{absent[0]}'.")
        frames.append(_numeric(df, list(df.columns), name))
    table = pd.concat(frames, axis=1)
    if table.columns.duplicated().any():
        raise CohortError(f"Column '{table.columns[table.columns.duplicated()][0]}' appears in two files.")
    table.index.name = "patient_index"
    table.attrs.update(split=split_name, labels=labels, sha256=digest.hexdigest())
    return table


def encode_outcome(table: pd.DataFrame, outcome: str = "Evolution") -> np.ndarray:
    """Class indices of a label column (:data:`LABELS` order: ``severe`` = 1; ``IOT`` = 1, ``DCD`` = 2).

    Raises :class:`CohortError` when the table has no such column (e.g. a test split without labels)."""
    if outcome not in LABELS:
        raise CohortError(f"Unknown outcome '{outcome}'; choose {' or '.join(LABELS)}.")
    if outcome not in table.columns:
        raise CohortError(
            f"The table has no '{outcome}' column: this split carries no outcome labels, so it can be scored "
            "but not used to train or validate a model."
        )
    classes = LABELS[outcome]
    values = table[outcome].astype(str)
    unknown = sorted(set(values) - set(classes))
    if unknown:
        raise CohortError(f"Unknown value(s) {unknown} in '{outcome}'; expected {', '.join(classes)}.")
    return values.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=int)


# --------------------------------------------------------------------------- data quality
@dataclass
class QualityFinding:
    """One data-quality problem: which column, how many patients, what the rule does."""

    column: str
    kind: str  # imputed_constant | not_binary | other_unit | implausible | missing | empty_region | undefined
    n_patients: int
    detail: str
    action: str

    def __str__(self) -> str:
        patients = "patient" if self.n_patients == 1 else "patients"
        return f"{self.column}: {self.detail} ({self.n_patients} {patients}) -> {self.action}"


@dataclass
class DataQualityReport:
    """What :class:`CovidMediaQualityRules` finds in a table and does about it (see the module doc)."""

    n_patients: int
    split: str | None
    findings: list[QualityFinding] = field(default_factory=list)

    @property
    def n_values_changed(self) -> int:
        """Values the rules change (set to missing or converted); reported-only findings excluded."""
        kinds = {"imputed_constant", "not_binary", "other_unit", "implausible"}
        return sum(f.n_patients for f in self.findings if f.kind in kinds)

    def to_frame(self) -> pd.DataFrame:
        """One row per finding: column, kind, n_patients, detail, action."""
        return pd.DataFrame([asdict(f) for f in self.findings], columns=list(QualityFinding.__dataclass_fields__))

    def to_text(self) -> str:
        """Plain-text report for the CLI, notebooks and logs."""
        head = f"Data quality: {self.n_patients} patients" + (f" (split {self.split})" if self.split else "")
        if not self.findings:
            return head + ": no problem found."
        lines = [head + f"; {self.n_values_changed} values changed by the documented rules:"]
        lines += [f"  - {f}" for f in self.findings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _mean_imputed(values: pd.Series, min_repeats: int = 3) -> float | None:
    """The column mean if it occurs >= ``min_repeats`` times (6 significant digits), else None."""
    v = values.dropna().astype(float)
    if len(v) < 2 * min_repeats:
        return None
    mean = float(v.mean())
    hits = np.isclose(v, mean, rtol=1e-6, atol=0.0)
    if hits.sum() >= min_repeats and not float(mean).is_integer():
        return mean
    return None


class CovidMediaQualityRules(TransformerMixin, BaseEstimator):
    """The documented data-quality rules of the module doc, as a fitted transform.

    ``fit`` remembers the mean-imputation constants of the training table; ``transform`` applies
    rules 1-4 to any table with the cohort's column names (columns absent are skipped; other
    columns pass unchanged) and returns a DataFrame. ``flags(X)`` returns, per rule and column,
    which rows the rules change, the basis of :func:`data_quality_report`.

    Parameters (units of the cohort columns): ``lymphocytes_max_1e9_l`` (5.0): largest plausible
    absolute count; ``lymphocytes_per_mm3_above`` (100.0): values above are cells/mm³ (÷ 1000);
    ``crp_max_mg_l`` (600.0): larger CRP is implausible; ``min_rows_for_batch_mean`` (20): look for
    the table's own mean imputation only in tables this large.
    """

    #: each output column depends only on the same input column (explanations map it back one to one)
    featurewise = True

    def __init__(
        self,
        lymphocytes_max_1e9_l: float = 5.0,
        lymphocytes_per_mm3_above: float = 100.0,
        crp_max_mg_l: float = 600.0,
        min_rows_for_batch_mean: int = 20,
    ):
        self.lymphocytes_max_1e9_l = lymphocytes_max_1e9_l
        self.lymphocytes_per_mm3_above = lymphocytes_per_mm3_above
        self.crp_max_mg_l = crp_max_mg_l
        self.min_rows_for_batch_mean = min_rows_for_batch_mean

    def fit(self, X: pd.DataFrame, y=None) -> CovidMediaQualityRules:
        X = self._frame(X)
        self.imputed_constants_ = {}
        for col in ("Age", "Lymphocytes", "CRP"):
            if col in X.columns:
                const = _mean_imputed(X[col])
                if const is not None:
                    self.imputed_constants_[col] = [const]
        self.feature_names_in_ = np.array(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    @staticmethod
    def _frame(X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise CohortError("The Covid-MedIA quality rules need a table with the cohort's column names.")
        return X

    def flags(self, X: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
        """``{(column, kind): boolean mask of rows changed}`` for the rules (kinds: imputed_constant,
        not_binary, other_unit (set missing), per_mm3 (converted), implausible)."""
        X = self._frame(X)
        out: dict[tuple[str, str], np.ndarray] = {}
        constants = getattr(self, "imputed_constants_", {})
        for col in ("Age", "Lymphocytes", "CRP"):
            if col not in X.columns:
                continue
            v = X[col].astype(float)
            known = list(constants.get(col, []))
            if len(X) >= self.min_rows_for_batch_mean:
                own = _mean_imputed(v)
                if own is not None:
                    known.append(own)
            mask = np.zeros(len(X), bool)
            for c in known:
                mask |= np.isclose(v.to_numpy(), c, rtol=1e-6, atol=0.0)
            out[(col, "imputed_constant")] = mask
        for col in BINARY_COLUMNS:
            if col in X.columns:
                v = X[col].astype(float)
                out[(col, "not_binary")] = (v.notna() & ~v.isin([0.0, 1.0])).to_numpy()
        if "Lymphocytes" in X.columns:
            v = X["Lymphocytes"].astype(float).to_numpy()
            free = ~out[("Lymphocytes", "imputed_constant")]
            with np.errstate(invalid="ignore"):
                out[("Lymphocytes", "per_mm3")] = free & (v > self.lymphocytes_per_mm3_above)
                out[("Lymphocytes", "other_unit")] = (
                    free & (v > self.lymphocytes_max_1e9_l) & (v <= self.lymphocytes_per_mm3_above)
                )
        if "CRP" in X.columns:
            v = X["CRP"].astype(float).to_numpy()
            with np.errstate(invalid="ignore"):
                out[("CRP", "implausible")] = ~out[("CRP", "imputed_constant")] & (v > self.crp_max_mg_l)
        return out

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        X = self._frame(X)
        flags = self.flags(X)
        out = X.copy()
        for (col, kind), mask in flags.items():
            if not mask.any():
                continue
            col_values = out[col].astype(float)
            if kind == "per_mm3":
                col_values[mask] = col_values[mask] / 1000.0
            else:
                col_values[mask] = np.nan
            out[col] = col_values
        return out

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.feature_names_in_ if input_features is None else input_features, dtype=object)


_ACTIONS = {
    "imputed_constant": (
        "imputed_constant",
        "the source's mean imputation (value {value} repeated, equal to the column mean)",
        "set to missing",
    ),
    "not_binary": ("not_binary", "value other than 0/1 in a yes/no column (mean imputation)", "set to missing"),
    "other_unit": (
        "other_unit",
        "value between {lo:g} and {hi:g}: a percentage of leukocytes, not a count in 10^9/L",
        "set to missing (cannot be converted without the leukocyte count)",
    ),
    "per_mm3": ("other_unit", "value above {hi:g}: cells/mm³ rather than 10^9/L", "divided by 1000"),
    "implausible": ("implausible", "CRP above {crp:g} mg/L (max {max:g})", "set to missing"),
}


def data_quality_report(table: pd.DataFrame, rules: CovidMediaQualityRules | None = None) -> DataQualityReport:
    """List the data-quality problems of a Covid-MedIA table and what ``rules`` do about them.

    ``rules``: a fitted :class:`CovidMediaQualityRules` (e.g. the one inside a saved model);
    default: the default rules fitted on ``table`` itself. Also lists (without changing them)
    missing values, ``Fat`` (undefined by the source) and regions whose features are all 0.
    """
    if rules is None:
        rules = CovidMediaQualityRules().fit(table)
    report = DataQualityReport(n_patients=len(table), split=table.attrs.get("split"))
    for (col, kind), mask in rules.flags(table).items():
        n = int(mask.sum())
        if not n:
            continue
        values = table.loc[mask, col].astype(float)
        kind_out, detail, action = _ACTIONS[kind]
        detail = detail.format(
            value=f"{values.iloc[0]:.6g}",
            lo=rules.lymphocytes_max_1e9_l,
            hi=rules.lymphocytes_per_mm3_above,
            crp=rules.crp_max_mg_l,
            max=float(values.max()),
        )
        report.findings.append(QualityFinding(col, kind_out, n, detail, action))
    for col in [c for c in CLINICAL_COLUMNS if c in table.columns]:
        n = int(table[col].isna().sum())
        if n and not (col == "Fat" and n == len(table)):
            report.findings.append(QualityFinding(col, "missing", n, "missing in the file", "left missing"))
    if "Fat" in table.columns and table["Fat"].notna().any():
        report.findings.append(
            QualityFinding(
                "Fat",
                "undefined",
                int(table["Fat"].notna().sum()),
                "not defined by the source (0.02-0.42, probably a fat fraction)",
                "kept in the table; the shipped model does not use it",
            )
        )
    features = [c for c in table.columns if str(c).startswith("original_")]
    n_missing = int(table[features].isna().sum().sum()) if features else 0
    if n_missing:
        report.findings.append(
            QualityFinding("radiomics", "missing", n_missing, "missing radiomics values", "left missing")
        )
    for region in REGIONS:
        cols = [c for c in radiomics_columns([region]) if c in table.columns]
        if cols:
            empty = int((table[cols].fillna(0) == 0).all(axis=1).sum())
            if empty:
                report.findings.append(
                    QualityFinding(
                        region,
                        "empty_region",
                        empty,
                        "all 107 features are 0 (empty mask: no such region found)",
                        "kept (the source's convention; workbench.radiomics gives NaN for an empty region: "
                        "use 0 before scoring a model trained on these features)",
                    )
                )
    return report


# --------------------------------------------------------------------------- product row
def covid_media_row(
    features: Sequence[str],
    radiomics: Mapping[str, float] | None = None,
    clinical: Mapping[str, Any] | None = None,
    biomarkers: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One-row table with exactly ``features`` (a model's feature list), for a new patient.

    ``radiomics``: the region features by cohort name (``original_shape_VoxelVolume_heart`` ...);
    ``clinical``: entered values by cohort name (``Age``, ``Sex``, ``HBP``, ``Diabetes``,
    ``Lymphocytes`` in 10^9/L, ``CRP`` in mg/L) or product name (``age_years``, ``sex`` (1 = male),
    ``hypertension``, ``diabetes``, ``lymphocytes_1e9_l``, ``crp_mg_l``);
    ``biomarkers``: the workbench biomarkers, of which ``lesion_pct_lung`` gives ``Disease_extent``.
    Features not given are NaN (the model imputes them; say so to the user). Booleans become 0/1.
    """
    values: dict[str, float] = {}
    for source in (biomarkers or {}, radiomics or {}, clinical or {}):
        for key, value in source.items():
            name = PRODUCT_TO_COHORT.get(key, key)
            if name not in features:
                continue
            if value is None or value == "":
                continue
            try:
                values[name] = float(value)
            except (TypeError, ValueError) as exc:
                raise CohortError(f"'{key}' must be a number, got {value!r}.") from exc
    return pd.DataFrame([[values.get(f, np.nan) for f in features]], columns=list(features), dtype=float)
