"""Adapter (filled later)."""
