"""The Streamlit app's own code (``streamlit run app.py`` puts this folder's parent on ``sys.path``).

``webapp.ui`` holds what the pages share. The analysis itself is the ``workbench`` package, which
does not import Streamlit.
"""
