"""Benchmarks of ruvector-lab: timing helpers, datasets, ground truth, the ADR-006 suite and the pipeline's
stages. Uses only the library's public API; nothing in the library imports this package."""
