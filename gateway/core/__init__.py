"""The bottom floor: models, errors, option specs and text rules. Standard library only.

Everything else in storegw may import from here; this package imports nothing of storegw's
(import-linter's layers contract in pyproject.toml enforces it).
"""
