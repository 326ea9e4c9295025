"""Image classification on ViT-style checkpoints and CLIP's vision tower (AutoModelForImageClassification)."""

from __future__ import annotations

from typing import Any

from mmkit.data import Split
from mmkit.tasks.image_rows import ImageRowsTask


class ImageClassificationTask(ImageRowsTask):
    name = "image_classification"
    head = "image-classification"
    pipeline_tag = "image-classification"
    hub_tags = ("image-classification",)
    example_input = {"image": "photo.jpg"}

    @staticmethod
    def batch_inputs(processor, images, texts, model_cfg):
        return {"pixel_values": processor(images, return_tensors="pt")["pixel_values"]}

    def prepare(self, split: Split, processor, labels: list[str] | None):
        column = self.cfg.data.image_column
        dataset = split.dataset.select_columns([column, "labels"]).rename_columns({column: "image"} if column != "image" else {})
        n = len(dataset)
        return dataset.add_column("length", [1] * n).add_column("row_index", list(range(n))), []

    def predict(self, model, processor, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        return self.predict_one(model, processor, labels, inputs.get("image"), None)
