"""The package version: recorded with every run (cldst/runner/provenance.py)."""

__version__ = "0.1.0"
