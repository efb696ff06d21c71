"""Models: classical estimator registry (classical); smp/timm networks (registry), offline pretrained weights (pretrained), inference (infer)."""
