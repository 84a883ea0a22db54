"""Where evaluated tasks come from, checked before anything is built or any model is loaded.

The default suite (``mhcb_bbh``, ``mhcb_gsm``, ``mhcb_mmlu``) needs nothing outside
the venv. Two kinds of task need something a machine may lack, and only when a
profile names them:

- ``mhcb_bigbench``: BIG-bench's task files on this machine (``eval.source:
  bigbench:<path>``, :mod:`mhc_bench.taskgen.bigbench`);
- lm-eval's own tasks (``bbh``, ``mmlu``, ``gsm8k``...): their datasets come from the
  Hugging Face hub, which :func:`mhc_bench.paths.configure_environment` switches off
  unless ``HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0`` are set.

A named source that is missing fails here at once with one line naming it
(:class:`TaskUnavailableError`, exit status 2); an unnamed one is never touched.
Imports no torch and no lm-eval, so the workflow can run these checks up front.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from mhc_bench.errors import UserError

LOCAL_PREFIX = "mhcb_"
BIGBENCH_PREFIX = "mhcb_bigbench"
HUB_PROBE_TIMEOUT_S = 10.0


class TaskUnavailableError(UserError):
    """A requested task needs data this machine cannot reach."""


def hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def builtin_tasks(tasks: list[str]) -> list[str]:
    """The names that are not the project's own (``mhcb_*``): lm-eval's tasks, from the hub."""
    return [t for t in tasks if not t.startswith(LOCAL_PREFIX)]


def check_builtin_reachable(builtin: list[str]) -> None:
    """Fail fast, naming the tasks, instead of letting ``datasets`` hang or retry.

    Offline switches set: refused. Otherwise one HEAD request to the hub (any HTTP
    answer counts as reachable), made only because such a task was named.
    """
    if not builtin:
        return
    if hub_offline():
        raise TaskUnavailableError(
            f"task(s) {builtin} are lm-eval built-ins whose datasets come from the Hugging Face hub, "
            "but HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is on (mhc-bench sets both unless told otherwise); "
            "on a machine with hub access run with HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0, or use the "
            "local suite mhcb_bbh mhcb_gsm mhcb_mmlu"
        )
    url = hub_endpoint()
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S)
    except urllib.error.HTTPError:
        return  # the hub answered
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TaskUnavailableError(
            f"task(s) {builtin} need the Hugging Face hub, but {url} is unreachable from this machine "
            f"({reason}); use the local suite mhcb_bbh mhcb_gsm mhcb_mmlu here"
        ) from None


def check_source_named(tasks: list[str], source: str | None) -> None:
    """``mhcb_bigbench*`` tasks need ``eval.source: bigbench:<path>``."""
    wanting = [t for t in tasks if t.startswith(BIGBENCH_PREFIX)]
    if wanting and source is None:
        raise TaskUnavailableError(
            f"task(s) {wanting} are built from BIG-bench's task files, which are never downloaded: "
            "name a checkout or sdist on this machine with eval.source: bigbench:<path> (--source)"
        )


def preflight(tasks: list[str], source: str | None, workdir: Path | None = None) -> None:
    """Every external thing ``tasks`` and ``source`` name exists (``workdir``: where a relative
    source path is resolved; default the current directory). Nothing is fetched."""
    from mhc_bench.taskgen import bigbench

    check_source_named(tasks, source)
    if source is not None:
        bigbench.parse_source(source, workdir)
    check_builtin_reachable(builtin_tasks(tasks))


def unknown_local(tasks: list[str], known: set[str]) -> None:
    """Project task names (``mhcb_*``) that the built suite does not have: a typo, not a hub task."""
    missing = [t for t in tasks if t.startswith(LOCAL_PREFIX) and t not in known]
    if missing:
        groups = sorted(k for k in known if k.count("_") == 1)
        raise UserError(f"unknown task(s) {missing}: the local suite has {groups} and their subtasks")
