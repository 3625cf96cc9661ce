"""Pytest plugin and in-process hive for people testing agents against a real hive (SPEC §9)."""

from __future__ import annotations
