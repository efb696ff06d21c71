"""busdx Streamlit app (run it with ``busdx app``). Research use only, not a medical device."""
from __future__ import annotations

import hashlib

import streamlit as st

from busdx.app.core import (ACCEPTED_MIME, SHAPE_LABELS, Settings, UploadResult,
                            analyse_upload, load_predictor)

BANNER = ("**Research use only — not a medical device.** busdx must not be used for diagnosis "
          "or any clinical decision. Predictions come from models trained on the public BUSI "
          "dataset and can be wrong.")

st.set_page_config(page_title="busdx — breast ultrasound (research use only)", layout="wide")
settings = Settings.from_env()


@st.cache_resource(show_spinner="Loading models…")
def get_predictor(s: Settings):
    return load_predictor(s)


@st.cache_data(max_entries=256, show_spinner=False)
def analyse_cached(name: str, data: bytes, s: Settings) -> UploadResult:
    return analyse_upload(name, data, get_predictor(s), s)


def show(res: UploadResult, key: str) -> None:
    if not res.ok:
        st.error(res.error)
        return
    with st.container(border=True):
        st.markdown(f"#### {res.name}")
        st.markdown(f"Predicted class: **{res.label}** — confidence {res.confidence:.1%}")
        cols = st.columns(3)
        for col, (cls, p) in zip(cols, res.probs.items()):
            col.metric(f"P({cls})", f"{p:.1%}")
        left, right = st.columns(2)
        left.image(res.outline_png, caption="Lesion outline (green)")
        if res.cam_png:
            right.image(res.cam_png, caption=f"Class activation map ({settings.cam_method}) "
                                             f"for “{res.label}”")
        else:
            right.info(res.cam_note or "No class activation map.")
        st.markdown(f"Lesion area: **{res.lesion_pixels:,} pixels**, "
                    f"**{res.lesion_percent:.2f} %** of the {res.width} × {res.height} image")
        if res.shape:
            rows = "\n".join(f"| {SHAPE_LABELS[k]} | {v:.3f} |" for k, v in res.shape.items())
            extra = (f" ({res.n_components} separate regions; shape of the largest)"
                     if res.n_components > 1 else "")
            st.markdown(f"Shape of the lesion{extra}:\n\n| descriptor | value |\n| --- | --- |\n"
                        + rows)
        else:
            st.markdown("No lesion segmented.")
        st.download_button("Download mask (PNG)", data=res.mask_png, file_name=res.mask_name,
                           mime="image/png", key=f"dl-{key}", on_click="ignore")


st.title("busdx — breast-ultrasound classification and segmentation")
st.warning(BANNER, icon="⚠️")

try:
    predictor = get_predictor(settings)
except Exception as e:  # noqa: BLE001 - a clear message, never a stack trace
    st.error(f"The models could not be loaded: {e}")
    st.stop()

st.caption(predictor.describe())
files = st.file_uploader(
    f"Upload breast-ultrasound scans (PNG or JPG, up to {settings.max_upload_mb} MB each)",
    type=list(ACCEPTED_MIME), accept_multiple_files=True, max_upload_size=settings.max_upload_mb)

if files:
    bar = st.progress(0.0, text="Analysing…") if len(files) > 1 else None
    n_bad = 0
    for i, f in enumerate(files):
        try:
            data = f.getvalue()
            res = analyse_cached(f.name, data, settings)
        except Exception as e:  # noqa: BLE001 - the app keeps serving
            res = UploadResult(f.name, error=f"{f.name}: could not be analysed "
                                             f"({type(e).__name__}: {e})")
        n_bad += not res.ok
        show(res, f"{i}-{hashlib.sha1(f.name.encode()).hexdigest()[:8]}")
        if bar is not None:
            bar.progress((i + 1) / len(files), text=f"Analysed {i + 1} of {len(files)}")
    if bar is not None:
        bar.empty()
    if len(files) > 1:
        st.caption(f"{len(files) - n_bad} of {len(files)} files analysed, {n_bad} rejected.")
else:
    st.info("Upload one or several scans to see the predicted class, the lesion outline, the "
            "class activation map and the lesion's size and shape.")
