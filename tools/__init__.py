"""Maintenance tools (not installed with cldst): run from the repository root, e.g.
``python -m tools.parity.run --help``; the tests import them with the root on sys.path
(pyproject's ``pythonpath``)."""
