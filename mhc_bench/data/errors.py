"""The data pipeline's user-facing error: a source that cannot be read as configured."""

from __future__ import annotations

from mhc_bench.errors import UserError


class DataSourceError(UserError):
    """A corpus or tokenizer that cannot be used as configured; the message is one line for the user.

    Raised at data-preparation time (never while a workflow lists its cells), before
    any tokenization or training starts; the CLI prints it without a traceback.
    """
