"""Images in datasets: where a row's image is, whether it may be read, and decoding it when a batch needs it.

A row's image is a reference, never pixels: a path (relative to the image root, which it may not leave) or,
for Hub datasets with an `Image` feature, the `{"bytes", "path"}` record the feature stores. Rows are checked
once when the data is loaded (file present, inside the root, a readable image); pixels are decoded in the
collator, one batch at a time, so a dataset of any size fits in memory.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from mmkit.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def resolve_image_path(value: str, root: Path) -> Path:
    """`value` (relative to `root`, or absolute) as a real path that must lie inside `root`.

    Symlinks are resolved first, so neither `../../etc/passwd` nor a link pointing out of the root gets out.
    """
    root = root.resolve()
    path = (root / value).resolve()  # an absolute `value` replaces `root` here, then must still be inside it
    if path != root and root not in path.parents:
        raise ValueError(f"image path {value!r} leaves the image root {root}; keep images under data.image_root")
    return path


def check_image(path: Path) -> str | None:
    """Why the file at `path` is not a usable image (missing, or not decodable to the end), or None when it is."""
    if not path.is_file():
        return f"image file {path} not found"
    return _decode_problem(path, f"image file {path} is not a readable image")


def check_image_record(record: dict) -> str | None:
    """Why a datasets `Image` record ({"bytes", "path"}, not decoded) is not a usable image, or None."""
    source = io.BytesIO(record["bytes"]) if record.get("bytes") else record["path"]
    return _decode_problem(source, "the image is not readable")


def _decode_problem(source, problem: str) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        decode_check(source)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"{problem} ({type(err).__name__}: {' '.join(str(err).split())[:120]})"
    return None


def decode_check(source) -> None:
    """Decode the image in `source` (a path or a binary file object) the whole way, as cheaply as it goes.

    `Image.verify()` alone checks a PNG's chunks but reads nothing of a JPEG's compressed data, so a truncated
    JPEG would pass and fail mid-epoch. A JPEG is decoded at 1/8 scale (libjpeg still reads every byte of the
    entropy-coded data, but skips most of the inverse DCT); other formats are verified, then decoded."""
    from PIL import Image

    with Image.open(source) as image:
        if image.format == "JPEG":
            image.draft(None, (1, 1))  # the smallest DCT scale libjpeg offers (1/8)
            image.load()
            return
        image.verify()  # chunk structure and checksums (PNG)
    if hasattr(source, "seek"):
        source.seek(0)
    with Image.open(source) as image:  # verify() leaves the image unusable: open again to decode
        image.load()


def load_rgb(reference: Any, min_side: int | None = None):
    """Decode one image reference (a path or a datasets `Image` record) to an upright RGB PIL image.

    `min_side`: the processor will shrink the image to about this size anyway, so a JPEG is decoded at the
    smallest 1/2, 1/4 or 1/8 scale that keeps both sides >= min_side (libjpeg's DCT scaling): the same input
    to the model's resize, at a fraction of the decoding and resizing cost."""
    from PIL import Image, ImageOps

    if isinstance(reference, (str, os.PathLike)):
        image = Image.open(reference)
    elif isinstance(reference, dict) and reference.get("bytes"):
        image = Image.open(io.BytesIO(reference["bytes"]))
    elif isinstance(reference, dict) and reference.get("path"):
        image = Image.open(reference["path"])
    elif isinstance(reference, Image.Image):
        image = reference
    else:
        raise UserError(f"cannot read an image from {type(reference).__name__} {str(reference)[:80]!r}")
    if min_side and image.format == "JPEG":
        image.draft("RGB", (min_side, min_side))
    image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    return image.convert("RGB")


def upright_size(reference: Any) -> tuple[int, int]:
    """(height, width) of an image as load_rgb turns it upright, read from its header only (no decoding)."""
    from PIL import Image

    source = io.BytesIO(reference["bytes"]) if isinstance(reference, dict) and reference.get("bytes") else (
        reference["path"] if isinstance(reference, dict) else reference
    )
    with Image.open(source) as image:
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations that swap the sides
            width, height = height, width
    return height, width


SIDE_KEYS = ("height", "width", "shortest_edge", "longest_edge")


def processor_min_side(processor) -> int | None:
    """The largest side an image processor resizes or crops to (its `size` / `crop_size`), if it says."""
    image_processor = getattr(processor, "image_processor", processor)
    sides = []
    for name in ("size", "crop_size"):
        value = getattr(image_processor, name, None)
        if isinstance(value, int):
            sides.append(value)
        elif value is not None:  # a dict, or transformers 5's SizeDict
            sides += [getattr(value, key, None) if not isinstance(value, dict) else value.get(key) for key in SIDE_KEYS]
    sides = [side for side in sides if isinstance(side, int)]
    return max(sides) if sides else None


def blank_like(image):
    """A mid-grey image of the same size: what the model sees when the image is withheld."""
    from PIL import Image

    return Image.new("RGB", image.size, (128, 128, 128))


def read_image_folder(root: Path) -> tuple[list[str], list[str]]:
    """`root/<label>/<image>` -> (image paths relative to root, label names), in a stable order."""
    if not any(child.is_dir() for child in root.iterdir()):
        raise UserError(f"{root}: an image folder needs one sub-folder per label (root/<label>/*.jpg); none found")
    paths, labels = [], []
    for label_dir in sorted(child for child in root.iterdir() if child.is_dir()):
        for file in sorted(label_dir.iterdir()):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(str(file.relative_to(root)))
                labels.append(label_dir.name)
            elif file.is_file() and not file.name.startswith("."):
                raise UserError(
                    f"{file}: not an image ({', '.join(IMAGE_SUFFIXES)}); remove it from the image folder"
                )
    if not paths:
        raise UserError(f"{root}: the label folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths, labels
