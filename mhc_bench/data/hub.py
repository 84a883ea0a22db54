"""The Hugging Face Hub side of the data pipeline: the offline switch, and pretrained tokenizer files.

:func:`mhc_bench.paths.configure_environment` sets ``HF_HUB_OFFLINE=1`` and
``HF_DATASETS_OFFLINE=1`` unless the user exported other values, so a run
never reaches the Hub by accident. A config that needs the Hub (a hub corpus,
a pretrained tokenizer that is not cached yet) fails here, before any compute,
with one line that names what was asked for and the setting that blocks it.
"""

from __future__ import annotations

import os
from pathlib import Path

from mhc_bench.data.errors import DataSourceError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's and datasets' reading of these flags
GO_ONLINE = ("export HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 on a machine with network access "
             "(mhc-bench sets both to 1 unless they are exported)")


class HubOfflineError(DataSourceError):
    """The config needs the Hugging Face Hub, and the Hub is switched off."""


def offline_setting() -> str | None:
    """``"NAME=value"`` of the first offline flag that is on, or None when the Hub may be used."""
    for name in OFFLINE_VARIABLES:
        value = os.environ.get(name, "")
        if value.strip().upper() in _TRUE:
            return f"{name}={value}"
    return None


def require_online(what: str) -> None:
    """Raise :class:`HubOfflineError` (one line) if ``what`` cannot be fetched because the Hub is off."""
    setting = offline_setting()
    if setting is not None:
        raise HubOfflineError(f"{what} needs the Hugging Face Hub, but {setting}: {GO_ONLINE}")


def split_revision(name: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ``("org/name", "rev")``; no ``@`` -> revision None (the default branch)."""
    repo, _, revision = name.partition("@")
    return repo, revision or None


def tokenizer_file(name: str) -> Path:
    """The ``tokenizer.json`` of Hub model ``name`` (``org/name[@revision]``): cached, else downloaded.

    Offline, a cached file still works; a missing one raises :class:`HubOfflineError`.
    """
    from huggingface_hub import hf_hub_download

    repo, revision = split_revision(name)
    try:
        return Path(hf_hub_download(repo, "tokenizer.json", revision=revision))
    except Exception as err:  # offline, not cached, no such repo or file, network down
        what = f"tokenizer hf:{name}"
        if offline_setting() is not None:
            require_online(f"{what} (not in the local Hugging Face cache)")
        raise DataSourceError(f"{what}: cannot fetch its tokenizer.json: {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}") from None
