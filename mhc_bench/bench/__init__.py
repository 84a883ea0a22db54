"""Overhead and kernel benchmarks behind ``mhc-bench bench`` (see ``command.py`` for the schema)."""
