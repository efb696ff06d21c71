"""Continuous integration: the incremental regression gate, its record and its report."""
