"""Classical-track features of FOV images.

* ``intensity``  grey-level statistics of a region (exact, from its histogram)
* ``texture``    GLCM and uniform-LBP texture of the lesion ROI (whole FOV without a lesion)
* ``lesion``     BI-RADS-style descriptors of a lesion mask (shape, margin, echogenicity,
                 boundary, posterior acoustics); neutral 0s and ``has_lesion`` 0 without one
* ``table``      one row per image (hand-made = intensity + texture + lesion), predicted-mask
                 reading, deterministic parquet tables
* ``embeddings`` EfficientNet-Lite0 ImageNet pooled embeddings (imports torch: import it
                 explicitly, it is not loaded by ``import busdx.features``)

Mask-dependent features come in two flavours, named so everywhere: *oracle* (ground-truth
mask, an upper bound) and *predicted* (a segmenter's mask, what a user gets).
"""
