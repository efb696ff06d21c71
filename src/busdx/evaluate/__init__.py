"""Shared evaluation of every model's test predictions: metrics with bootstrap CIs, plot data.

- classification: read ``data/predictions/<model>.csv``, sklearn metrics, ECE, curves.
- segmentation: read ``data/predictions/<model>_masks.npz``, Dice/IoU/HD95 per image.
- bootstrap: vectorised percentile-bootstrap CIs.
- plots: CSVs for ``dvc plots`` and the overlay gallery.
- headline: the flat ``metrics/headline.json`` and how each key's model is chosen.
- run: the whole evaluation (used by stages/evaluate.py).
"""
