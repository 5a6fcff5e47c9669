"""Shared fixtures. Store-specific fixtures live in each test folder's own conftest.py."""
