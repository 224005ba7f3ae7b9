"""Home page: what the workbench does, its pages and the sample cases. Research use only."""

from __future__ import annotations

import streamlit as st

from webapp import ui
from workbench.sample_data import sample_cases

ui.page_header("CT Severity Workbench")

st.markdown(
    """
Open-source research workbench for COVID-19 chest CT: **scan → lung and lesion segmentation →
interpretable imaging biomarkers → with age, sex and labs an explained prediction of severe outcome.**

| Page | What it does |
|---|---|
| **Case** | Open a sample case or upload a chest CT (NIfTI, or a DICOM series as .zip). Lungs, ground-glass opacity and consolidation are segmented; the slice viewer (axial / coronal / sagittal, lung and mediastinal windows) and a rotatable 3D view show them. Biomarkers (CT severity score, disease extent, volumes, texture) are placed against a cohort; a model predicts severe outcome and SHAP explains why; a follow-up scan gives the lesion volume change; masks, biomarkers and a one-page report can be downloaded. |
| **Cohort** | Fit several models (logistic regression, LightGBM, the seed study's neural network, …) on the sample synthetic cohort, the real Tongji 2020 or Covid-MedIA cohorts or your own table; compare cross-validated ROC curves with confidence bands, pick an operating point, check calibration and decision curves, and explain the models (SHAP importance, beeswarm, dependence, subgroups). |
| **About** | Definitions of every biomarker, the models, the data and the limits of this tool. |
"""
)
c1, c2, c3 = st.columns(3)
c1.page_link("pages/1_Case.py", label="Analyse a case", icon=":material/radiology:")
c2.page_link("pages/2_Cohort.py", label="Model a cohort", icon=":material/groups:")
c3.page_link("pages/3_About.py", label="About, definitions, limits", icon=":material/info:")

st.subheader("Sample cases")
cases = sample_cases()
if len(cases):
    st.caption("Click a case to open it on the Case page.")
    widths = [2, 1, 5, 2]
    for col, head in zip(st.columns(widths), ["case", "kind", "description", "follow-up of"]):
        col.markdown(f"**{head}**")
    for row in cases.itertuples():
        c1, c2, c3, c4 = st.columns(widths, vertical_alignment="center")
        c1.page_link(
            "pages/1_Case.py", label=row.case_id, query_params={"case": row.case_id}, icon=":material/radiology:"
        )
        c2.markdown(row.kind)
        c3.markdown(row.description)
        c4.markdown(row.followup_of or "")
    st.caption(
        "'synthetic' cases are computer-generated phantoms with exact ground truth; 'real' cases are "
        "public CT scans (see sample_data/README.md and the licences there)."
    )
else:
    st.info("No sample data found: run `workbench synth sample_data`.")
st.caption(
    "Uploaded scans are unpacked into a private temporary folder on the machine running this app, "
    "deleted as soon as the scan has been read; they are not stored. "
    "Everything runs offline; no data leaves the machine."
)
