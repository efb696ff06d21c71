"""Training: deep loops and their stage runner (deep, runner, augment); CV helpers for the classical track (classical)."""
