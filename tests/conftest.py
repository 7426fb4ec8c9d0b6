"""Shared pytest configuration: the stack fixtures live in tests/e2e/conftest.py."""
