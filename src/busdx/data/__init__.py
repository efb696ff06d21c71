"""Data stages: the BUSI archive (archive, synthetic), audit, mask merging, crops and splits."""
