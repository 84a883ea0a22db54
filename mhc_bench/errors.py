"""The one error type for problems a user can fix, and how the CLI reports it.

Raised anywhere (bad config, missing or unfinished cell, busy run, unreachable data);
``mhc_bench.cli.main`` prints it on stderr as one line, ``mhc-bench <command>: error: ...``,
and exits with status 2. Programming errors keep their tracebacks.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what and, where it helps, how."""

    def one_line(self) -> str:
        """The message on one line (multi-line messages, e.g. one line per config key, joined)."""
        return "; ".join(line.strip() for line in str(self).splitlines() if line.strip())
