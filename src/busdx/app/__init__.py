"""Streamlit app: upload breast-ultrasound scans, see the prediction. Research use only.

``busdx app`` runs ``streamlit run`` on ``APP_SCRIPT``; settings reach the script through the
environment variables in ``ENV`` (the CLI sets them). The per-upload work is in
``busdx.app.core`` (plain functions, tested without a browser); it calls the same functions
as ``busdx predict`` (busdx.predict), so the app and the command give identical results.
"""
from pathlib import Path

APP_SCRIPT = Path(__file__).with_name("streamlit_app.py")
DEFAULT_MAX_UPLOAD_MB = 25
ENV = {
    "models_dir": "BUSDX_MODELS_DIR",
    "model": "BUSDX_MODEL",
    "seg_model": "BUSDX_SEG_MODEL",
    "params": "BUSDX_PARAMS",
    "device": "BUSDX_DEVICE",
    "cam_method": "BUSDX_CAM_METHOD",
    "max_upload_mb": "BUSDX_MAX_UPLOAD_MB",
}
