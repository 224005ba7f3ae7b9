"""Cohort tables: loading, validation and per-patient aggregation of longitudinal labs.

A :class:`Cohort` is one row per patient, a binary outcome column and a list of
numeric feature columns (the names of the feature-name contract where they exist).

Longitudinal lab tables (several blood draws per patient) must be reduced to one row
per patient before modelling. :func:`aggregate_longitudinal` does that with an explicit
rule inside an explicit time window after admission:

- ``"first"`` (default): the first value drawn within the first ``window_days`` days;
- ``"last"``: the last value within the window;
- ``"worst"``: the most abnormal value within the window (direction per lab, see
  :data:`WORSE_WHEN_LOW`; other labs: highest is worst);
- ``"mean"``: the mean of the values within the window.

``window_days=None`` uses the whole stay. Beware: the last value before discharge or
death (and "worst over the whole stay") LEAKS THE OUTCOME -- the labs of a dying
patient in their final hours are a consequence of the outcome, not an early warning.
Such a model looks excellent and is useless at admission. The default (first value in
the first 2 days) is the fair early-warning setup; :func:`leakage_warning` gives the
warning every front end shows for the leaky choices.

:func:`load_cohort` is the one entry point for a cohort from anywhere (a table file, a
DataFrame, a folder layout, ``"tongji"``): it recognises the layout (the Tongji training and
external-test tables, generic one-row-per-patient tables, longitudinal tables with an ID and
a time column), aggregates longitudinal rows with a stated rule, and returns one table whose
``attrs`` say what was done (``layout``, ``aggregation``, ``notes``, ``renamed``).
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from workbench.errors import CohortError
from workbench.paths import sample_data_dir, shared_dataset

TONGJI_FILENAME = "time_series_375_prerpocess_en.xlsx"

#: Columns that are never used as features by default (matched case-insensitively).
OUTCOME_COLUMNS = ("severe", "intubation", "icu", "death", "time_to_event_days", "event_observed")
NON_FEATURE_COLUMNS = OUTCOME_COLUMNS + ("true_risk", "patient_id", "centre", "n_draws_in_window", "outcome")

#: Names of patient-ID columns, compared after lower-casing and dropping non-letters/digits
#: (``PATIENT_ID``, ``Patient ID``, ``patientId`` and ``patient_id`` are all ``patientid``).
ID_COLUMN_NAMES = (
    "patientid",
    "id",
    "subjectid",
    "caseid",
    "studyid",
    "recordid",
    "participantid",
    "pid",
    "patient",
    "subject",
    "mrn",
    "patientnumber",
    "patientno",
)
#: Names of draw/visit time columns recognised in longitudinal tables (same normalisation).
TIME_COLUMN_NAMES = ("redate", "time", "date", "datetime", "day", "days", "drawtime", "sampletime", "sampledate")

#: Labs where a LOW value is the abnormal one (used by the "worst" rule).
WORSE_WHEN_LOW = frozenset(
    {
        "lymphocytes_1e9_l",
        "lymphocytes_pct",
        "eosinophils_1e9_l",
        "eosinophils_pct",
        "platelets_1e9_l",
        "albumin_g_l",
        "pao2_mmhg",
        "haemoglobin_g_l",
        "haematocrit_pct",
        "red_cells_1e12_l",
        "monocytes_pct",
        "prothrombin_activity",
        "antithrombin",
        "egfr",
        "calcium",
        "corrected_calcium",
        "serum_sodium",
        "hco3",
        "total_protein",
        "total_cholesterol",
    }
)

#: Tongji (Yan et al. 2020) column -> contract name.
TONGJI_COLUMNS = {
    "Lactate dehydrogenase": "ldh_u_l",
    "High sensitivity C-reactive protein": "crp_mg_l",
    "(%)lymphocyte": "lymphocytes_pct",
    "lymphocyte count": "lymphocytes_1e9_l",
    "neutrophils(%)": "neutrophils_pct",
    "neutrophils count": "neutrophils_1e9_l",
    "monocytes(%)": "monocytes_pct",
    "monocytes count": "monocytes_1e9_l",
    "eosinophils(%)": "eosinophils_pct",
    "Eosinophil count": "eosinophils_1e9_l",
    "White blood cell count": "leukocytes_1e9_l",
    "Red blood cell count": "red_cells_1e12_l",
    "hemoglobin": "haemoglobin_g_l",
    "hematocrit": "haematocrit_pct",
    "Platelet count": "platelets_1e9_l",
    "glutamic-pyruvic transaminase": "alt_u_l",
    "aspartate aminotransferase": "ast_u_l",
    "albumin": "albumin_g_l",
}


# --------------------------------------------------------------------------- column names
def _norm(name: object) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def find_id_column(columns: Iterable) -> str | None:
    """The patient-ID column among ``columns``, found case-insensitively (``PATIENT_ID``,
    ``patient_id``, ``Patient ID``, ``id``, ``subject_id``, ...; see :data:`ID_COLUMN_NAMES`,
    earlier names win); None when there is none."""
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(_norm(c), str(c))
    for name in ID_COLUMN_NAMES:
        if name in by_norm:
            return by_norm[name]
    return None


def is_id_column(name: object) -> bool:
    """True for a column named like a patient ID (never a feature)."""
    return _norm(name) in ID_COLUMN_NAMES


def _find_time_column(columns: Iterable) -> str | None:
    by_norm = {_norm(c): str(c) for c in columns}
    return next((by_norm[n] for n in TIME_COLUMN_NAMES if n in by_norm), None)


def leakage_warning(rule: str | None, window_days: float | None) -> str | None:
    """The warning to show for an aggregation that leaks the outcome (``last`` value, or any
    rule over the whole stay); None for an early-window rule such as first value within 2 days."""
    if rule == "last":
        return (
            "The last value before discharge or death leaks the outcome: the labs of a dying patient in their "
            "final hours are a consequence of the outcome, not an early warning. Use 'first' for a fair setup."
        )
    if rule and window_days is None:
        return (
            f"'{rule}' over the whole stay includes values taken as the patient deteriorated and leaks the "
            "outcome. Use an early window (e.g. 2 days after admission) for a fair setup."
        )
    return None


def repeated_id_message(df: pd.DataFrame, id_column: str) -> str | None:
    """A plain explanation when ``id_column`` repeats (several rows per patient) or is blank
    on some rows (an ID written only on each patient's first row); None when every row is one
    patient."""
    ids = df[id_column]
    blanks = int(ids.isna().sum())
    filled = ids.ffill()
    counts = filled.value_counts()
    if blanks == 0 and (counts <= 1).all():
        return None
    n_patients = int(filled.nunique())
    worst = counts.index[0]
    msg = (
        f"The table has {len(df)} rows for {n_patients} patient{'s' if n_patients != 1 else ''} in the ID column "
        f"'{id_column}'"
        + (f" (patient {worst!r} has {int(counts.iloc[0])} rows)" if counts.iloc[0] > 1 else "")
        + (f"; the ID is blank on {blanks} rows (written only on each patient's first row?)" if blanks else "")
        + ". This looks like a longitudinal table with several rows (e.g. blood draws) per patient: a model "
        "needs ONE row per patient. Reduce it first with a stated rule, e.g. `workbench fit TABLE --aggregate "
        "first --id-column ID --time-column DRAW_TIME --window-days 2` (the first value of each lab within 2 days "
        "of admission), or `workbench.cohort.aggregate_longitudinal` in Python."
    )
    return msg


# --------------------------------------------------------------------------- loading
def load_table(source: str | Path | bytes | IO) -> pd.DataFrame:
    """Read a cohort table from CSV, Parquet or Excel (path, bytes or file object).

    The format is taken from the file suffix, else sniffed from the content.
    Raises :class:`CohortError` when the file cannot be read or is empty.
    """
    name = ""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise CohortError(f"Cohort file not found: {path}")
        name = path.name.lower()
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        name = str(getattr(source, "name", "")).lower()
        data = source.read()
        if isinstance(data, str):
            data = data.encode()
    if not data:
        raise CohortError(f"The cohort file {name or ''} is empty.".replace("  ", " "))
    if name.endswith((".parquet", ".pq")) or data[:4] == b"PAR1":
        kind = "parquet"
    elif name.endswith((".xlsx", ".xlsm", ".xls")) or data[:4] == b"PK\x03\x04" or data[:4] == b"\xd0\xcf\x11\xe0":
        kind = "excel"
    else:
        kind = "csv"
    try:
        if kind == "parquet":
            df = pd.read_parquet(io.BytesIO(data))
        elif kind == "excel":
            df = pd.read_excel(io.BytesIO(data))
        else:
            df = pd.read_csv(io.BytesIO(data), sep=None, engine="python")
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
        raise CohortError(f"Could not read the cohort table as {kind.upper()}: {exc}") from exc
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise CohortError("The cohort table has no rows or no columns.")
    return df


# --------------------------------------------------------------------------- cohort
@dataclass
class Cohort:
    """One row per patient: ``data[features]`` -> ``data[outcome]`` (0/1).

    ``dropped`` records columns left out of an automatic feature selection and why.
    """

    data: pd.DataFrame
    outcome: str
    features: list[str]
    id_column: str | None = None
    centre_column: str | None = None
    time_column: str | None = None
    event_column: str | None = None
    dropped: dict[str, str] = field(default_factory=dict)
    #: a :data:`workbench.models.PREPROCESSING` step every model of this cohort starts with (e.g. the
    #: Covid-MedIA data-quality rules); from the table's ``attrs["preprocess"]`` when not given
    preprocess: str | None = None
    #: ``{column: the product's name for the same input}`` (e.g. ``Age`` -> ``age_years``), recorded in the
    #: models fitted on this cohort so the app and ``workbench analyze`` can fill them; from ``attrs["input_aliases"]``
    input_aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame | str | Path,
        outcome: str,
        features: Sequence[str] | None = None,
        id_column: str | None = None,
        centre_column: str | None = None,
        time_column: str | None = None,
        event_column: str | None = None,
        validate: bool = True,
        min_events: int = 10,
        preprocess: str | None = None,
    ) -> Cohort:
        """Build (and by default validate) a cohort.

        ``features=None`` takes every numeric column except the id, centre and outcome
        columns (and ``true_risk``); of those, all-empty and constant columns are left
        out and listed in ``dropped``. ``id_column``/``centre_column`` default to
        ``patient_id``/``centre`` when present. ``preprocess`` and the input aliases default to the
        table's ``attrs`` (set by the loader of a cohort layout, see :func:`load_cohort`).
        """
        df = table if isinstance(table, pd.DataFrame) else load_table(table)
        attrs = dict(df.attrs)
        df = df.copy()
        preprocess = preprocess or attrs.get("preprocess")
        aliases = {str(k): str(v) for k, v in (attrs.get("input_aliases") or {}).items()}
        if id_column is None:
            id_column = find_id_column(df.columns)
        if centre_column is None and "centre" in df:
            centre_column = "centre"
        if outcome not in df.columns:
            raise CohortError(
                f"The outcome column '{outcome}' is not in the table. Columns are: {_preview(df.columns)}"
            )
        dropped: dict[str, str] = {}
        if features is None:
            skip = {_norm(c) for c in NON_FEATURE_COLUMNS} | {
                _norm(c) for c in (outcome, id_column, centre_column, time_column, event_column) if c
            }
            features = []
            for col in df.columns:
                if _norm(col) in skip:
                    continue
                if is_id_column(col):
                    dropped[col] = "patient ID"
                    continue
                s = df[col]
                if s.dtype == bool:
                    df[col] = s = s.astype(float)
                if not pd.api.types.is_numeric_dtype(s):
                    dropped[col] = "not numeric"
                    continue
                if s.isna().all():
                    dropped[col] = "no values"
                    continue
                if s.nunique(dropna=True) < 2:
                    dropped[col] = "constant"
                    continue
                features.append(col)
            if not features:
                raise CohortError("The table has no usable numeric feature columns.")
        cohort = cls(
            df,
            outcome,
            list(features),
            id_column,
            centre_column,
            time_column,
            event_column,
            dropped,
            preprocess,
            aliases,
        )
        if validate:
            cohort.validate(min_events=min_events)
        return cohort

    # ----------------------------------------------------------------- checks
    def validate(self, min_events: int = 10) -> Cohort:
        """Check the table; raise :class:`CohortError` naming the offending column.

        Checks: columns exist; features numeric, not all-empty, not constant; outcome
        present for every patient, binary 0/1, at least ``min_events`` patients in each
        class; no duplicated patient ids.
        """
        df = self.data
        wanted = [self.outcome, *self.features] + [
            c for c in (self.id_column, self.centre_column, self.time_column, self.event_column) if c
        ]
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            raise CohortError(f"Missing column(s) {missing} in the cohort table. Columns are: {_preview(df.columns)}")
        if len(set(self.features)) != len(self.features):
            raise CohortError("A feature is listed twice.")
        ids_as_features = [c for c in self.features if c == self.id_column or is_id_column(c)]
        if ids_as_features:
            raise CohortError(f"The patient ID column {ids_as_features[0]!r} cannot be a feature.")
        if self.id_column:
            repeated = repeated_id_message(df, self.id_column)
            if repeated:
                raise CohortError(repeated)
        if self.outcome in self.features:
            raise CohortError(f"The outcome '{self.outcome}' cannot also be a feature.")
        for col in self.features:
            s = df[col]
            if s.dtype == bool:
                df[col] = s = s.astype(float)
            if not pd.api.types.is_numeric_dtype(s):
                num = pd.to_numeric(s, errors="coerce")
                bad = s[num.isna() & s.notna()]
                if len(bad):
                    raise CohortError(
                        f"Column '{col}' has non-numeric values (e.g. {bad.iloc[0]!r} in row {bad.index[0]}); "
                        "enter numbers only (leave unknown values empty)."
                    )
                df[col] = num
            if df[col].isna().all():
                raise CohortError(f"Column '{col}' has no values at all; remove it from the features.")
            if df[col].nunique(dropna=True) < 2:
                raise CohortError(f"Column '{col}' has the same value for every patient; it cannot inform a model.")
            if np.isinf(df[col].to_numpy(dtype=float)).any():
                raise CohortError(f"Column '{col}' contains infinite values.")
        y = df[self.outcome]
        if y.isna().any():
            raise CohortError(
                f"The outcome '{self.outcome}' is missing for {int(y.isna().sum())} patient(s); "
                "remove them or record the outcome."
            )
        if y.dtype == bool:
            df[self.outcome] = y = y.astype(int)
        values = set(pd.unique(y))
        if not values <= {0, 1}:
            raise CohortError(
                f"The outcome '{self.outcome}' must be binary 0/1; found values {sorted(map(str, values))[:6]}."
            )
        counts = y.astype(int).value_counts()
        for cls_ in (0, 1):
            k = int(counts.get(cls_, 0))
            if k < min_events:
                raise CohortError(
                    f"Too few patients with {self.outcome} = {cls_}: {k} (need at least {min_events} in each "
                    "class to fit and validate a model)."
                )
        return self

    # ----------------------------------------------------------------- views
    @property
    def X(self) -> pd.DataFrame:
        """Feature table (float), indexed like ``data``."""
        return self.data[self.features].astype(float)

    @property
    def y(self) -> np.ndarray:
        return self.data[self.outcome].to_numpy(dtype=int)

    @property
    def ids(self) -> pd.Index:
        if self.id_column:
            return pd.Index(self.data[self.id_column].astype(str), name=self.id_column)
        return pd.Index(self.data.index.astype(str), name="row")

    @property
    def groups(self) -> np.ndarray | None:
        return None if not self.centre_column else self.data[self.centre_column].astype(str).to_numpy()

    def __len__(self) -> int:
        return len(self.data)


def _preview(cols: Iterable) -> str:
    cols = [str(c) for c in cols]
    return ", ".join(cols[:20]) + (f", ... ({len(cols)} in all)" if len(cols) > 20 else "")


# --------------------------------------------------------------------------- longitudinal
def aggregate_longitudinal(
    df: pd.DataFrame,
    id_column: str,
    time_column: str,
    admission_column: str | None = None,
    rule: str = "first",
    window_days: float | None = 2.0,
    value_columns: Sequence[str] | None = None,
    static_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Reduce several rows per patient to one.

    ``id_column`` may be filled only on each patient's first row (it is forward-filled).
    Draws are kept when ``time - admission <= window_days`` (``admission_column``, else
    the patient's first draw, is day 0; ``window_days=None`` keeps the whole stay -- see
    the module docstring on outcome leakage). ``rule`` is ``first``, ``last``,
    ``worst`` or ``mean`` per column over the kept draws. ``static_columns`` (age, sex,
    outcome, ...) take the patient's first non-missing value. Returns one row per patient
    with ``id_column``, the static columns, the aggregated values and
    ``n_draws_in_window``.
    """
    if rule not in {"first", "last", "worst", "mean"}:
        raise CohortError(f"Unknown aggregation rule '{rule}'; use first, last, worst or mean.")
    for col in [id_column, time_column, admission_column, *static_columns]:
        if col and col not in df.columns:
            raise CohortError(f"Missing column '{col}' in the longitudinal table.")
    d = df.copy()
    d[id_column] = d[id_column].ffill()
    if d[id_column].isna().any():
        raise CohortError(f"The first row has no patient id in '{id_column}'.")
    t = _as_days(d[time_column])
    t0 = _as_days(d[admission_column]) if admission_column else t.groupby(d[id_column]).transform("min")
    d["_day"] = t - t0
    if value_columns is None:
        skip = {id_column, time_column, admission_column, *static_columns}
        value_columns = [c for c in d.columns if c not in skip and c != "_day" and pd.api.types.is_numeric_dtype(d[c])]
    static = d.groupby(id_column, sort=True)[list(static_columns)].first() if static_columns else None
    keep = d["_day"].notna()
    if window_days is not None:
        keep &= d["_day"] <= window_days
    w = d[keep].sort_values([id_column, "_day"], kind="stable")
    g = w.groupby(id_column, sort=True)[list(value_columns)]
    if rule == "first":
        agg = g.first()
    elif rule == "last":
        agg = g.last()
    elif rule == "mean":
        agg = g.mean()
    else:
        lo = [c for c in value_columns if c in WORSE_WHEN_LOW]
        hi = [c for c in value_columns if c not in WORSE_WHEN_LOW]
        agg = pd.concat([g.min()[lo] if lo else None, g.max()[hi] if hi else None], axis=1)[list(value_columns)]
    counts = w.groupby(id_column, sort=True).size().rename("n_draws_in_window")
    ids = pd.Index(sorted(d[id_column].unique()), name=id_column)
    out = agg.reindex(ids)
    out["n_draws_in_window"] = counts.reindex(ids).fillna(0).astype(int)
    if static is not None:
        out = static.reindex(ids).join(out)
    return out.reset_index()


def _as_days(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return (s - pd.Timestamp("2000-01-01")).dt.total_seconds() / 86400.0
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    return (pd.to_datetime(s, errors="coerce") - pd.Timestamp("2000-01-01")).dt.total_seconds() / 86400.0


# --------------------------------------------------------------------------- Tongji
def snake_case(name: str) -> str:
    """'Lactate dehydrogenase' -> 'lactate_dehydrogenase'; Greek letters spelled out."""
    for greek, word in {"α": "alpha", "β": "beta", "γ": "gamma"}.items():
        name = name.replace(greek, f"_{word}_")
    name = name.replace("%", " pct ")
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    name = re.sub(r"_+", "_", name)
    return f"lab_{name}" if name[:1].isdigit() else name


def tongji_path() -> Path:
    """Where the Tongji 375-patient table is: ``real/tongji_2020_clinical/`` of the sample data
    (:func:`workbench.paths.sample_data_dir`), else the shared data folder
    (:func:`workbench.paths.shared_dataset`). Raises CohortError if neither exists."""
    candidates = [
        sample_data_dir() / "real" / "tongji_2020_clinical" / TONGJI_FILENAME,
        shared_dataset("tongji_2020_clinical") / TONGJI_FILENAME,
    ]
    for path in candidates:
        if path.exists():
            return path
    raise CohortError("The Tongji cohort file was not found; looked in: " + ", ".join(map(str, candidates)))


def _read_cached(path: Path) -> pd.DataFrame:
    """load_table with a small cache keyed by path, size and mtime (the Excel read takes seconds)."""
    if not path.exists():
        raise CohortError(f"Cohort file not found: {path}")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _RAW_CACHE:
        _RAW_CACHE.clear()
        _RAW_CACHE[key] = load_table(path)
    return _RAW_CACHE[key].copy()


_RAW_CACHE: dict[tuple, pd.DataFrame] = {}

#: columns of the Tongji tables (training and external test); matched case-insensitively
TONGJI_REQUIRED = ("PATIENT_ID", "RE_DATE", "Admission time", "outcome")
TONGJI_OPTIONAL = ("age", "gender", "Discharge time")


def _columns_ci(df: pd.DataFrame, names: Iterable[str]) -> dict[str, str]:
    """Canonical name -> the table's own spelling, for the names present (case/spacing-insensitive)."""
    by_norm = {_norm(c): c for c in df.columns}
    return {n: by_norm[_norm(n)] for n in names if _norm(n) in by_norm}


def is_tongji_layout(df: pd.DataFrame) -> bool:
    """True for a raw Tongji table (Yan et al. 2020): the 375-patient training file or the
    authors' external-test layout (same columns, possibly without age and gender)."""
    return len(_columns_ci(df, TONGJI_REQUIRED)) == len(TONGJI_REQUIRED) and any(
        c in df.columns for c in TONGJI_COLUMNS
    )


def load_tongji(
    source: str | Path | pd.DataFrame | None = None,
    rule: str = "first",
    window_days: float | None = 2.0,
    landmark: bool = False,
) -> pd.DataFrame:
    """The Tongji Hospital cohort (Yan et al., Nat Mach Intell 2020; 375 patients), one row
    per patient, with contract names (``ldh_u_l``, ``crp_mg_l``, ``lymphocytes_pct``,
    ``age_years``, ``sex`` 1 male / 0 female / NaN unknown, outcome ``death``) and the other
    labs in snake_case. Labs are aggregated with ``rule`` over draws within ``window_days`` days of
    admission (default: the first value within 2 days -- an honest early-warning setup).
    ``nlr`` is computed per draw from neutrophil and lymphocyte counts.
    Adds ``time_to_event_days`` (admission to discharge/death), ``event_observed`` (= death)
    and ``n_draws_in_window``.

    ``source``: the raw table as a path (Excel, CSV -- dates as text are parsed -- or Parquet)
    or a DataFrame; default: the bundled 375-patient file. The authors' external-test layout
    (same columns without ``age``/``gender``, few labs) is accepted: absent age, sex and
    discharge time become NaN and ``attrs["notes"]`` says so; absent labs are simply absent.

    Caveat: 41 of the 375 patients left hospital (33 died) within 2 days, so for them the
    early window reaches the end of their stay. ``landmark=True`` drops patients whose
    stay ended within ``window_days`` (a landmark analysis: predicting, at day
    ``window_days``, the outcome of those still in hospital).
    """
    if isinstance(source, pd.DataFrame):
        raw = source.copy()
    else:
        raw = _read_cached(Path(source or tongji_path()))
    found = _columns_ci(raw, TONGJI_REQUIRED + TONGJI_OPTIONAL)
    missing = [c for c in TONGJI_REQUIRED if c not in found]
    if missing:
        raise CohortError(
            f"This is not the Tongji table: missing {missing}. Expected the columns of Yan et al. 2020 "
            "(PATIENT_ID, RE_DATE, Admission time, outcome, and lab values)."
        )
    raw = raw.rename(columns={v: k for k, v in found.items()})
    external = "age" not in found or "gender" not in found
    notes = []
    for col, what in (("age", "age"), ("gender", "sex"), ("Discharge time", "length of stay")):
        if col not in raw.columns or raw[col].isna().all():
            raw[col] = np.nan
            notes.append(f"The table has no {col!r} column: {what} is unknown (NaN) for every patient.")
    raw["PATIENT_ID"] = raw["PATIENT_ID"].ffill()
    raw = raw.rename(columns=TONGJI_COLUMNS)
    for col in ("RE_DATE", "Admission time", "Discharge time"):
        raw[col] = _as_datetime(raw[col])
    if {"neutrophils_1e9_l", "lymphocytes_1e9_l"} <= set(raw.columns):
        lym = raw["lymphocytes_1e9_l"].where(raw["lymphocytes_1e9_l"] > 0)
        raw["nlr"] = raw["neutrophils_1e9_l"] / lym
    stay = (raw["Discharge time"] - raw["Admission time"]).dt.total_seconds() / 86400.0
    raw["time_to_event_days"] = stay.round(2)
    static = ["age", "gender", "outcome", "time_to_event_days"]
    skip = set(TONGJI_REQUIRED) | set(TONGJI_OPTIONAL) | {"time_to_event_days"}
    labs = [c for c in raw.columns if c not in skip and pd.api.types.is_numeric_dtype(raw[c])]
    out = aggregate_longitudinal(
        raw,
        "PATIENT_ID",
        "RE_DATE",
        admission_column="Admission time",
        rule=rule,
        window_days=window_days,
        value_columns=labs,
        static_columns=static,
    )
    out = out.rename(columns={"PATIENT_ID": "patient_id", "age": "age_years", "outcome": "death"})
    out["patient_id"] = _id_strings(out["patient_id"])
    gender = pd.to_numeric(out.pop("gender"), errors="coerce")
    out["sex"] = gender.map({1: 1.0, 2: 0.0})  # 1 male, 2 female in the source; anything else unknown
    if gender.notna().any() and out["sex"].isna().any():
        notes.append(f"Sex is unknown for {int(out['sex'].isna().sum())} patient(s) (gender not 1 or 2).")
    out["event_observed"] = out["death"]
    out = out.rename(columns={c: snake_case(c) for c in out.columns if c not in TONGJI_COLUMNS.values()})
    if landmark and window_days is not None:
        out = out[out["time_to_event_days"] > window_days].reset_index(drop=True)
    front = ["patient_id", "age_years", "sex", "death", "time_to_event_days", "event_observed", "n_draws_in_window"]
    out = out[front + [c for c in out.columns if c not in front]]
    no_labs = out.drop(columns=front).notna().sum(axis=1) == 0
    if no_labs.any():
        where = f"within {window_days:g} days of admission" if window_days is not None else "at all"
        notes.append(f"{int(no_labs.sum())} patient(s) have no lab value {where}.")
    out.attrs = {
        "layout": "tongji (external-test layout)" if external else "tongji",
        "aggregation": {"rule": rule, "window_days": window_days},
        "notes": notes,
        "renamed": {"PATIENT_ID": "patient_id", "age": "age_years", "gender": "sex", "outcome": "death"},
    }
    return out


def _as_datetime(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    return pd.to_datetime(s, errors="coerce")


def _id_strings(ids: pd.Series) -> pd.Series:
    """IDs as text; whole numbers written without a decimal point (1.0 -> '1')."""
    num = pd.to_numeric(ids, errors="coerce")
    if num.notna().all() and (num == num.round()).all():
        return num.astype("int64").astype(str)
    return ids.astype(str)


# --------------------------------------------------------------------------- one entry point
def load_cohort(
    source: str | Path | pd.DataFrame | bytes | IO,
    *,
    rule: str | None = None,
    window_days: float | None = 2.0,
    id_column: str | None = None,
    time_column: str | None = None,
    admission_column: str | None = None,
    static_columns: Sequence[str] = (),
    aggregate: str = "auto",
) -> pd.DataFrame:
    """Any supported cohort -> one table (one row per patient where the layout allows).

    ``source``: ``"tongji"`` (the bundled real cohort), ``"covid_media"`` (the Covid-MedIA training
    split in ``../shared/data``, :func:`covid_media_folder`), a table file (CSV, Parquet, Excel; a
    path, bytes or a file object), a DataFrame, or a folder of a split of the Covid-MedIA layout
    (:func:`workbench.covid_media_model.cohort_table`: ``Evolution`` as 0/1, the data-quality rules
    and default features named in ``attrs``).

    - Raw Tongji tables (training or external-test layout) go through :func:`load_tongji`
      with ``rule`` (default ``first``) within ``window_days``.
    - Other tables are reduced with :func:`aggregate_longitudinal` (``rule``, default
      ``first``, within ``window_days`` of each patient's first row or ``admission_column``)
      when ``aggregate="always"`` or, with ``aggregate="auto"`` and a ``rule``, when patient
      IDs repeat. The ID and time columns are the ones named or else recognised
      (``patient_id``/``PATIENT_ID``/``id`` ...; ``RE_DATE``/``date``/``time``/``day`` ...); a
      :class:`CohortError` says what is missing. ``static_columns`` (outcome, age, ...) take
      each patient's first value. Without aggregation, a table with repeated IDs is returned as
      it is and :meth:`Cohort.validate` refuses it with a message saying how to aggregate.

    ``attrs`` of the result: ``layout``, ``aggregation`` (rule and window, or None), ``notes``
    (sentences for the user), ``renamed`` (source column -> column in this table).
    """
    if isinstance(source, str) and source.strip().lower() == "tongji":
        return load_tongji(rule=rule or "first", window_days=window_days)
    if isinstance(source, str) and source.strip().lower() in ("covid_media", "covid-media"):
        return _load_folder(covid_media_folder())
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        return _load_folder(Path(source))
    df = source.copy() if isinstance(source, pd.DataFrame) else load_table(source)
    if is_tongji_layout(df):
        out = load_tongji(df, rule=rule or "first", window_days=window_days)
        within = f"within {window_days:g} days of admission" if window_days is not None else "over the whole stay"
        out.attrs["notes"] = [
            f"Recognised the Tongji layout ({len(df)} rows): one row per patient from the {rule or 'first'} value "
            f"of each lab {within}."
        ] + list(out.attrs.get("notes", []))
        return out
    attrs: dict = {"layout": "table", "aggregation": None, "notes": [], "renamed": {}}
    if aggregate not in ("auto", "always"):
        raise CohortError(f"aggregate must be 'auto' or 'always', not {aggregate!r}.")
    id_col = id_column or find_id_column(df.columns)
    repeated = bool(id_col and id_col in df.columns and repeated_id_message(df, id_col))
    if aggregate == "always" or (rule and repeated):
        time_col = time_column or _find_time_column(df.columns)
        if not id_col or not time_col or id_col not in df.columns or time_col not in df.columns:
            raise CohortError(
                "Aggregating a longitudinal table needs a patient ID column and a draw-time column"
                f" (found: ID {id_col or 'none'}, time {time_col or 'none'}); name them with --id-column and "
                "--time-column."
            )
        rule = rule or "first"
        static = [c for c in static_columns if c and c in df.columns]
        df = aggregate_longitudinal(
            df,
            id_col,
            time_col,
            admission_column=admission_column,
            rule=rule,
            window_days=window_days,
            static_columns=static,
        )
        start = f"'{admission_column}'" if admission_column else "each patient's first row"
        within = f"within {window_days:g} days of {start}" if window_days is not None else "over the whole stay"
        attrs.update(
            layout="longitudinal table",
            aggregation={"rule": rule, "window_days": window_days},
            notes=[
                f"One row per patient ('{id_col}') from the {rule} value of each column {within} "
                f"(time column '{time_col}')."
            ],
        )
    df.attrs = attrs
    return df


def _load_folder(folder: Path) -> pd.DataFrame:
    """A cohort stored as a folder: the Covid-MedIA layout (six CSV files of one split), as a modelling
    table (:func:`workbench.covid_media_model.cohort_table`)."""
    from workbench.covid_media_model import cohort_table

    return cohort_table(folder)


def covid_media_folder() -> Path:
    """The Covid-MedIA training split (``../shared/data/covid_media_train``); CohortError saying where the
    public data can be obtained when it is not there."""
    from workbench.covid_media import SOURCE, TRAIN_DATASET, is_covid_media_folder
    from workbench.paths import shared_dataset

    folder = shared_dataset(TRAIN_DATASET)
    if not is_covid_media_folder(folder):
        raise CohortError(
            f"The Covid-MedIA training split is not in {folder}. The data are public ({SOURCE}): put the six "
            "dataset_<part>_Train.csv files of the training split in that folder (or set WORKBENCH_SHARED_DATA), or "
            "give the path of a folder holding a split of that layout."
        )
    return folder
