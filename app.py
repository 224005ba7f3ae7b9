"""CT Severity Workbench — Streamlit entry point (`streamlit run app.py`).

A thin layer over the `workbench` package. Research use only.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

SAMPLE_DATA = Path(__file__).resolve().parent / "sample_data"

st.set_page_config(page_title="CT Severity Workbench", layout="wide")
st.title("CT Severity Workbench")
st.warning("Research use only. Not a medical device; not for clinical decisions.")

manifest = SAMPLE_DATA / "manifest.csv"
if manifest.exists():
    st.subheader("Sample cases")
    st.dataframe(pd.read_csv(manifest), hide_index=True)
else:
    st.info("No sample data found: run `workbench synth sample_data` to generate it.")
