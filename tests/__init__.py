"""Tests; see tests/conftest.py for what each folder's marker means."""
