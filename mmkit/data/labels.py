"""Label sets: read them from data or config, and turn label values into class ids with row-precise errors.

One rule for every task with named classes: an integer label is an index into the label list; a string label
must be one of its names. The list comes from `data.labels`, from a Hub `ClassLabel` feature, or from the
training split (integers 0..max, or the sorted distinct strings).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from mmkit.data import Split
from mmkit.errors import UserError


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    return None


def label_values(split: Split, column: str, config_key: str) -> Iterable[tuple[int, Any]]:
    split.require_columns(column, config_key_of={column: config_key})
    return enumerate(split.dataset[column])


def class_label_names(split: Split, column: str) -> list[str] | None:
    """The names of a Hub `ClassLabel` column (integers in the data), if the column is one."""
    feature = split.dataset.features.get(column)
    names = getattr(feature, "names", None)
    return list(names) if names else None


def infer_label_names(values: Iterable[tuple[int, Any]], split: Split, column: str) -> list[str]:
    """The label set of a split: 0..max for integer labels, the sorted distinct names for string labels."""
    kind = None
    seen: set = set()
    for i, value in values:
        this = _kind(value)
        if this is None:
            raise UserError(f"{split.where(i)}: '{column}' is {value!r}; labels must be integers or strings")
        if kind is None:
            kind = this
        elif this != kind:
            raise UserError(
                f"{split.where(i)}: '{column}' is {value!r} ({this}) but earlier rows use {kind} labels; "
                "use one type for every row (all names or all integers)"
            )
        seen.add(value)
    if kind == "int":
        if min(seen) < 0:
            raise UserError(f"{split.origin}: negative label {min(seen)}; integer labels are class indices 0..K-1")
        return [str(i) for i in range(max(seen) + 1)]
    return sorted(seen)


def encode_label(value: Any, names: list[str], where: Callable[[], str], column: str, origin_of_names: str) -> int:
    """The class id of one label value, or a UserError that says how to fix the row.

    `where` is called only on error: finding a row's line in a large file is not free."""
    kind = _kind(value)
    if kind == "int" and 0 <= value < len(names):
        return value
    if kind == "str" and value in names:
        return names.index(value)
    shown = ", ".join(names) if len(names) <= 12 else ", ".join(names[:12]) + ", ..."
    if kind is None:
        problem = f"'{column}' is {value!r}, not a label"
    elif kind == "int":
        problem = f"label {value} is not a class index 0..{len(names) - 1}"
    else:
        problem = f"label {value!r} is not in the label set [{shown}]"
    raise UserError(
        f"{where()}: {problem} ({origin_of_names}); fix the row, or list every label in data.labels"
    )



def label_config(labels: list[str]) -> dict:
    """The label fields of a transformers config, so a saved model names its classes."""
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}
