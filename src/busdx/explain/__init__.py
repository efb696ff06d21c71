"""Class activation maps of the deep networks and quantitative checks of where they point.

- cam: ``cam_for`` (one network) / ``ensemble_cam`` (fold models) with the ``grad-cam``
  package; the public interface used by ``busdx predict`` and the app.
- metrics: CAM energy inside the (dilated) lesion, pointing game, per-class summaries with CIs.
- gallery: image / true and predicted outlines / CAM overlay figures.
- run: the whole explain stage (used by stages/explain.py).
"""
