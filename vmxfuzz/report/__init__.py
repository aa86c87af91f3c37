"""Rendering of results for people (terminal now; HTML later)."""
