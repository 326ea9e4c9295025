"""What every task with an image per row shares: checking the images once, and decoding them per batch.

Rows keep a reference to their image (a path inside the image root, or a Hub `Image` record), never the
pixels. `load_data` checks every image before anything trains (present, inside the root, decodable to the end), so a bad
image stops the run with its row named, or is left out and counted (`data.on_bad_row: skip`): no row whose
image failed to load is ever trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmkit.config import Config
from mmkit.data import Split, check_text_column
from mmkit.errors import UserError
from mmkit.data.images import blank_like, check_image, check_image_record, load_rgb, processor_min_side, resolve_image_path
from mmkit.tasks.base import TaskData
from mmkit.tasks.classification import ClassificationTask


class ImageRowsTask(ClassificationTask):
    uses_text = False

    def load_data(self, splits: dict[str, Split], labels: list[str] | None = None) -> TaskData:
        cfg = self.cfg
        for split in splits.values():
            split.require_columns(cfg.data.image_column, config_key_of={cfg.data.image_column: "data.image_column"})
            if self.uses_text and cfg.data.on_bad_row == "error":
                check_text_column(split, cfg.data.text_column, "data.text_column")
        names = self.settle_labels(splits, labels)
        notes = []
        for name, split in splits.items():
            skipped = self._check_rows(split, cfg)
            if skipped:
                notes.append(f"{name}: skipped {skipped} rows with a bad image{' or text' if self.uses_text else ''} (data.on_bad_row=skip)")
        return TaskData(splits=splits, labels=names, notes=notes)

    def _check_rows(self, split: Split, cfg: Config) -> int:
        """Replace the image column by checked references (absolute paths or Hub records); return rows skipped."""
        import datasets

        column = cfg.data.image_column
        dataset = split.dataset
        hub_images = isinstance(dataset.features.get(column), datasets.Image)
        if hub_images:  # keep the bytes, decode per batch
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
        root = self._image_root(split, cfg) if not hub_images else None
        texts = dataset[cfg.data.text_column] if self.uses_text else None
        keep, refs = [], []
        for i, value in enumerate(dataset[column]):
            ref, problem = self._check_image(value, root, hub_images)
            if problem is None and texts is not None and not (isinstance(texts[i], str) and texts[i].strip()):
                problem = f"'{cfg.data.text_column}' is {texts[i]!r}, expected non-empty text"
            if problem is not None:
                if cfg.data.on_bad_row == "skip":
                    continue
                raise UserError(f"{split.where(i)}: {problem}; fix the row or set data.on_bad_row=skip to leave such rows out")
            keep.append(i)
            refs.append(ref)
        if not keep:
            raise UserError(f"{split.origin}: no usable rows left in the {split.name} split")
        skipped = len(dataset) - len(keep)
        if skipped:
            split.rows = [split.source_row(i) for i in keep]
            dataset = dataset.select(keep)
        if not hub_images:
            dataset = dataset.remove_columns(column).add_column(column, refs)
        split.dataset = dataset
        return skipped

    @staticmethod
    def _image_root(split: Split, cfg: Config) -> Path:
        if cfg.data.image_root:
            root = Path(cfg.data.image_root).expanduser()
        elif split.path is not None:
            root = split.path if split.path.is_dir() else split.path.parent
        else:
            raise UserError(f"{split.origin}: image paths need a folder to be read from; set data.image_root")
        if not root.is_dir():
            raise UserError(f"data.image_root {root} is not a folder")
        return root

    @staticmethod
    def _check_image(value: Any, root: Path | None, hub_images: bool) -> tuple[Any, str | None]:
        if hub_images:
            if not value or not (value.get("bytes") or value.get("path")):
                return None, "the image is missing"
            return value, check_image_record(value)
        if not isinstance(value, str) or not value.strip():
            return None, f"the image path is {value!r}; expected a file path"
        try:
            path = resolve_image_path(value, root)
        except ValueError as err:
            return None, str(err)
        return str(path), check_image(path)

    # --- inputs -------------------------------------------------------------------------------------------
    def collator(self, processor, blank_images: bool = False):
        return ImageBatchCollator(self.batch_inputs, processor, self.cfg.model, self.uses_text, blank_images)

    def batch_inputs(self, processor, images, texts, model_cfg) -> dict:
        """Model inputs for a batch of decoded RGB images (and their texts)."""
        raise NotImplementedError

    # --- prediction -----------------------------------------------------------------------------------------
    def predict_one(self, model, processor, labels, image_path: str | None, text: str | None):
        """One image (+ text) through the same collator as training; label and probabilities."""
        import torch

        if not image_path:
            raise UserError("pass the image: mmkit predict RUN " + ('"text" ' if self.uses_text else "") + "--image PATH")
        path = Path(image_path).expanduser()
        problem = check_image(path)
        if problem:
            raise UserError(problem)
        batch = self.collator(processor)([{"image": str(path), "text": text or "", "labels": 0}])
        batch.pop("labels")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        with torch.inference_mode():
            logits = model(**batch).logits[0]
        return self.label_and_probabilities(logits, labels)


class ImageBatchCollator:
    """Decodes the batch's images (RGB, EXIF-upright), runs the backbone's processor, adds labels and row ids.

    `blank_images=True` shows the model a grey image instead: how much a model relies on the image.
    """

    def __init__(self, preprocess, processor, model_cfg, uses_text: bool, blank_images: bool = False):
        self.preprocess = preprocess
        self.processor = processor
        self.model_cfg = model_cfg
        self.uses_text = uses_text
        self.blank_images = blank_images
        self.min_side = processor_min_side(getattr(processor, "image_processor", processor))

    def __call__(self, rows: list[dict[str, Any]]):
        import torch

        images = []
        for row in rows:
            try:
                image = load_rgb(row["image"], self.min_side)
            except OSError as err:  # checked at load time: the file changed since
                where = row["image"] if isinstance(row["image"], str) else "a Hub image"
                raise UserError(f"image {where} could not be decoded ({err}); was it changed during the run?") from None
            images.append(blank_like(image) if self.blank_images else image)
        texts = [row["text"] for row in rows] if self.uses_text else None
        batch = self.preprocess(self.processor, images, texts, self.model_cfg)
        batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        if "row_index" in rows[0]:
            batch["row_index"] = torch.tensor([row["row_index"] for row in rows], dtype=torch.long)
        return batch
