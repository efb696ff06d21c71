"""Classical (non-deep) lesion segmentation: pixel model + region candidates (classical)."""
