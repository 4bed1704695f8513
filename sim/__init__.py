"""Placeholder package docstring; replaced by the sim implementation."""
