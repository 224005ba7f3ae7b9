"""CT Severity Workbench — Streamlit entry point (`streamlit run app.py`).

A thin layer over the `workbench` package. This file only declares the pages
(pages/0_Home.py, 1_Case.py, 2_Cohort.py, 3_About.py); each page shows the
research-use-only notice. Research use only.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="CT Severity Workbench", page_icon="🫁", layout="wide")
pages = [
    st.Page("pages/0_Home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Case.py", title="Case", icon=":material/radiology:", url_path="Case"),
    st.Page("pages/2_Cohort.py", title="Cohort", icon=":material/groups:", url_path="Cohort"),
    st.Page("pages/3_About.py", title="About", icon=":material/info:", url_path="About"),
]
st.navigation(pages).run()
