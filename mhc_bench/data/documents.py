"""Documents of a row source (local files or a Hub dataset) as one resumable ``datasets`` stream.

Everything is read with Hugging Face ``datasets`` in streaming mode (no Arrow
copy of a large corpus is written): the ``text``, ``json`` and ``parquet``
builders for local files, in sorted file order, rows in file order; the Hub
dataset in the order its shards are listed. The stream's ``state_dict()`` is
what :mod:`mhc_bench.data.stream` checkpoints, so an interrupted tokenization
resumes at the next unread document instead of starting over.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mhc_bench.data import sources
from mhc_bench.data.errors import DataSourceError
from mhc_bench.data.hub import require_online

TEXT_COLUMN = "text"  # the column the ``text`` builder produces


@dataclass(frozen=True)
class RowSource:
    """Where the documents come from; built from a ``DataConfig``."""

    corpus: str
    text_field: str = "text"
    hf_config: str | None = None
    hf_split: str = "train"
    hf_revision: str | None = None

    @property
    def kind(self) -> str:
        return sources.corpus_kind(self.corpus)

    def describe(self) -> str:
        """One short line naming the source (errors, progress bar)."""
        if self.kind == sources.HUB:
            config = f", config {self.hf_config}" if self.hf_config else ""
            return f"corpus {self.corpus} ({self.hf_split} split{config})"
        return f"corpus {self.corpus}"

    def check_reachable(self) -> None:
        """Fail fast (one line) when the source cannot be read here: a Hub dataset while offline."""
        if self.kind == sources.HUB:
            require_online(f"{self.describe()}, a Hugging Face Hub dataset,")

    def field(self) -> str:
        files = sources.resolve_files(self.corpus)[0] if self.kind == sources.FILES else []
        if files and sources.files_format(files) == "text":
            return TEXT_COLUMN
        return self.text_field

    def open(self) -> Any:
        """A fresh ``datasets.IterableDataset`` over the documents (nothing is read yet)."""
        import datasets

        self.check_reachable()
        if self.kind == sources.HUB:
            stream = datasets.load_dataset(sources.hub_name(self.corpus), self.hf_config, split=self.hf_split,
                                           revision=self.hf_revision, streaming=True)
        else:
            files, _ = sources.resolve_files(self.corpus)
            if not files:
                raise DataSourceError(f"{self.describe()}: no files match")
            fmt = sources.files_format(files)
            options = {"sample_by": "document"} if fmt == "text" else {}
            stream = datasets.load_dataset(fmt, data_files=[str(p) for p in files], split="train",
                                           streaming=True, **options)
        return stream

    def resolved_revision(self) -> str | None:
        """The Hub commit the stream reads (recorded in ``meta.json``); None for local files or offline."""
        if self.kind != sources.HUB:
            return None
        try:
            from huggingface_hub import HfApi

            return HfApi().dataset_info(sources.hub_name(self.corpus), revision=self.hf_revision).sha
        except Exception:  # recording the commit is best effort; the data itself was read
            return None


def texts(stream: Any, field: str, where: str) -> Iterator[str]:
    """The documents' text; rows without text (null, empty) are skipped, a missing field is an error."""
    for row in stream:
        if field not in row:
            raise DataSourceError(f"{where}: rows have no field {field!r} (fields: {sorted(row)}); "
                                  f"set data.text_field")
        value = row[field]
        yield value if isinstance(value, str) else ""
