"""Loading data splits (local files or Hub datasets) with errors that name the file and the row.

Every split becomes a `datasets.Dataset` wrapped in a `Split`, which remembers where its rows came from so
that any later check (a missing column, an unknown label) can point at `train.jsonl line 17`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmkit.errors import UserError

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
# CoNLL column files (one token per line, tag last, blank line between sentences): read by mmkit.data.ner.
CONLL_SUFFIXES = (".conll", ".conllu", ".bio", ".iob", ".iob2")
SUPPORTED = ".jsonl, .json, .csv, .tsv, .parquet or a CoNLL column file (.conll, .bio, .iob)"
SPLITS = ("train", "validation", "test")
# Formats read as text: their bytes must be UTF-8 (the loaders would otherwise pass mojibake on, or fail later).
TEXT_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", *CONLL_SUFFIXES)
_CHUNK = 1 << 20


@dataclass
class Split:
    """One split of rows plus where they came from."""

    name: str  # train | validation | test (or what the user asked for)
    origin: str  # the file path or `hub:owner/name:split`
    dataset: Any  # datasets.Dataset
    path: Path | None = None  # local file, when there is one
    rows: list[int] | None = None  # original row of each dataset row, after subsampling
    row_lines: list[int] | None = None  # 1-based first line of each original row, for multi-line formats

    def source_row(self, i: int) -> int:
        return self.rows[i] if self.rows is not None else i

    def __len__(self) -> int:
        return len(self.dataset)

    def where(self, row: int) -> str:
        """A human pointer to 0-based row `row`: `data/train.jsonl line 18` or `hub:x/y:train row 18`."""
        row = self.source_row(row)
        if self.path is not None and self.row_lines is not None:
            return f"{self.path} line {self.row_lines[row]}"
        if self.path is not None and self.path.suffix == ".jsonl":
            return f"{self.path} line {_jsonl_line_of_row(self.path, row)}"
        if self.path is not None and self.path.is_dir():  # an image folder, listed label by label, name by name
            return f"{self.path} image {row + 1}"
        if self.path is not None and self.path.suffix in (".csv", ".tsv"):
            return f"{self.path} row {row + 1} (line {row + 2}, after the header)"
        return f"{self.origin} row {row + 1}"

    def require_columns(self, *columns: str, config_key_of: dict[str, str] | None = None) -> None:
        present = list(self.dataset.column_names)
        for column in columns:
            if column not in present:
                key = (config_key_of or {}).get(column)
                fix = f"set {key}=<column>" if key else "rename the column"
                raise UserError(
                    f"{self.origin}: no column '{column}' (columns: {', '.join(present) or 'none'}); {fix}"
                )


def load_split(source: str, name: str, hub_config: str | None = None) -> Split:
    """Load one split from a local file or a Hub dataset id (`owner/name` or `owner/name:split`)."""
    path = Path(source).expanduser()
    if path.is_dir() and not path.suffix:
        split = _load_image_folder(path, name)
    elif path.suffix.lower() in (*FILE_BUILDERS, *CONLL_SUFFIXES) or path.exists() or source.startswith((".", "/", "~")):
        split = _load_file(path, name)
    else:
        split = _load_hub(source, name, hub_config)
    if len(split) == 0:
        raise UserError(f"{split.origin}: the {name} split has no rows; point data.{name} at a file with data")
    return split


def _load_file(path: Path, name: str) -> Split:
    import datasets

    suffix = path.suffix.lower()
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "not found"
        raise UserError(f"data.{name}: {path} is {what}; give the path to a {SUPPORTED} file")
    if suffix not in FILE_BUILDERS and suffix not in CONLL_SUFFIXES:
        raise UserError(f"data.{name}: {path} has an unsupported extension '{suffix}'; use {SUPPORTED}")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty; the {name} split needs rows")
    if suffix in TEXT_SUFFIXES:
        check_utf8(path)
    if suffix in CONLL_SUFFIXES:
        from mmkit.data.ner import read_conll

        dataset, lines = read_conll(path)
        return Split(name=name, origin=str(path), dataset=dataset, path=path, row_lines=lines)
    builder = FILE_BUILDERS[suffix]
    kwargs: dict[str, Any] = {"delimiter": "\t"} if suffix == ".tsv" else {}
    # No "Generating train split" bars on the first read of a file (later reads hit the cache and print none):
    # mmkit's banner says how many rows each split has.
    datasets.disable_progress_bars()
    try:
        # `data_files` names the one file: `data_dir` would also pick up every other file in its folder.
        dataset = datasets.load_dataset(builder, data_files={name: str(path)}, split=name, **kwargs)
    except Exception as err:  # noqa: BLE001 - turned into a precise message below
        raise UserError(_diagnose_unreadable(path, err)) from None
    return Split(name=name, origin=str(path), dataset=dataset, path=path)


def _load_image_folder(root: Path, name: str) -> Split:
    """An image-classification folder `root/<label>/*.jpg` as rows {"image": path under root, "label": name}."""
    import datasets

    from mmkit.data.images import read_image_folder

    paths, labels = read_image_folder(root)
    dataset = datasets.Dataset.from_dict({"image": paths, "label": labels})
    return Split(name=name, origin=str(root), dataset=dataset, path=root)


def _load_hub(dataset_id: str, name: str, hub_config: str | None) -> Split:
    import datasets

    repo, _, split_name = dataset_id.partition(":")
    split_name = split_name or name
    origin = f"hub:{repo}:{split_name}"
    try:
        dataset = datasets.load_dataset(repo, hub_config, split=split_name)
    except Exception as err:  # noqa: BLE001 - network, missing split, missing dataset: all user-fixable
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"data.{name}: could not load Hub dataset '{repo}' split '{split_name}': {first_line} "
            f"(a local file path must exist; a Hub id needs network access)"
        ) from None
    return Split(name=name, origin=origin, dataset=dataset)


def _diagnose_unreadable(path: Path, err: Exception) -> str:
    """Find the row that broke the loader and say what is wrong with it."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            with path.open(encoding="utf-8") as handle:
                for line_no, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as bad:
                        return f"{path} line {line_no}: not valid JSON ({bad.msg}); fix or remove that line"
                    if not isinstance(row, dict):
                        return f"{path} line {line_no}: expected a JSON object {{...}}, got {type(row).__name__}"
        elif suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix in (".csv", ".tsv"):
            with path.open(encoding="utf-8", newline="") as handle:
                reader = csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ",")
                header = next(reader, [])
                for line_no, row in enumerate(reader, 2):
                    if row and len(row) != len(header):
                        return (
                            f"{path} line {line_no}: {len(row)} fields where the header has {len(header)}; "
                            "quote fields that contain the delimiter"
                        )
    except UnicodeDecodeError as bad:
        return f"{path}: not UTF-8 text (byte {bad.start}); save the file as UTF-8"
    except json.JSONDecodeError as bad:
        return f"{path} line {bad.lineno}: not valid JSON ({bad.msg})"
    cause = err.__cause__ or err
    return f"{path}: could not be read ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})"


def check_utf8(path: Path) -> None:
    """A UserError naming the line and byte offset of the first byte sequence in `path` that is not UTF-8.

    One streaming pass in 1 MiB chunks (a multi-byte character cut by a chunk boundary is carried over);
    lines are counted only when something is wrong."""
    offset, carry = 0, b""  # offset: bytes of the file before `carry`
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            data = carry + chunk
            if not data:
                return
            try:
                data.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as err:
                if chunk and err.reason == "unexpected end of data" and err.start >= len(data) - 3:
                    carry = data[err.start:]  # the rest of the character is in the next chunk
                    data = data[: err.start]
                else:
                    _not_utf8(path, handle, offset + err.start, data[err.start:err.end])
            if not chunk:
                return
            offset += len(data)


def _not_utf8(path: Path, handle, offset: int, bad: bytes) -> None:
    handle.seek(0)
    line = 1
    remaining = offset
    while remaining > 0:
        block = handle.read(min(_CHUNK, remaining))
        line += block.count(b"\n")
        remaining -= len(block)
    shown = " ".join(f"0x{b:02x}" for b in bad[:4])
    raise UserError(
        f"{path} line {line} (byte offset {offset}): not UTF-8 text (byte {shown}); save it as UTF-8 "
        "(e.g. `iconv -f <its encoding> -t UTF-8`)"
    )


def _jsonl_line_of_row(path: Path, row: int) -> int:
    """1-based line number of the `row`-th non-blank line (the JSON loader skips blank lines)."""
    seen = -1
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if line.strip():
                seen += 1
                if seen == row:
                    return line_no
    return row + 1


def check_text_column(split: Split, column: str, config_key: str) -> None:
    """Every row's `column` is a non-empty string, else a UserError naming the row."""
    split.require_columns(column, config_key_of={column: config_key})
    for i, value in enumerate(split.dataset[column]):
        if not isinstance(value, str):
            raise UserError(f"{split.where(i)}: '{column}' is {value!r}, expected text; fix or remove the row")
        if not value.strip():
            raise UserError(f"{split.where(i)}: '{column}' is empty; fix or remove the row")


def subsample(split: Split, max_rows: int | None, seed: int) -> Split:
    """The first `max_rows` rows after a seeded shuffle (the whole split when `max_rows` is empty).

    Same rows as `dataset.shuffle(seed=seed).select(range(max_rows))`; error messages keep the file's row
    numbers.
    """
    if max_rows is None or max_rows >= len(split):
        return split
    if max_rows <= 0:
        raise UserError(f"max rows for the {split.name} split must be positive, got {max_rows}")
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(split))[:max_rows]
    dataset = split.dataset.select(order).flatten_indices()
    rows = [split.source_row(int(i)) for i in order]
    return Split(split.name, split.origin, dataset, path=split.path, rows=rows, row_lines=split.row_lines)
