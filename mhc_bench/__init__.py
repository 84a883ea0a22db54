"""mhc-bench: a reproducibility benchmark suite for mHC (arXiv:2512.24880)."""

__version__ = "0.1.0"
