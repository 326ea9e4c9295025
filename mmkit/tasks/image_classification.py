"""Image classification on ViT-style checkpoints (AutoModelForImageClassification), LoRA on q_proj/v_proj."""

from __future__ import annotations

from typing import Any

from mmkit.config import Config
from mmkit.data import Split
from mmkit.errors import UserError
from mmkit.labels import label_config
from mmkit.modeling import head_modules_of, load_pretrained, pretrained_kwargs
from mmkit.tasks.image_rows import ImageRowsTask


def pixel_values(processor, images, texts, model_cfg):
    return {"pixel_values": processor(images, return_tensors="pt")["pixel_values"]}


class ImageClassificationTask(ImageRowsTask):
    name = "image_classification"

    def load_processor(self, cfg: Config, source: str):
        from transformers import AutoImageProcessor

        self._model_cfg = cfg.model
        kwargs = pretrained_kwargs(cfg.model, source)
        kwargs.pop("dtype")
        try:
            return AutoImageProcessor.from_pretrained(source, **kwargs)
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"could not load the image processor from '{source}': {' '.join(str(err).split())[:300]}") from None

    def preprocess_fn(self, processor):
        return pixel_values

    def prepare(self, split: Split, processor, cfg: Config, labels: list[str] | None):
        self._model_cfg = cfg.model
        column = cfg.data.image_column
        dataset = split.dataset.select_columns([column, "labels"]).rename_columns({column: "image"} if column != "image" else {})
        n = len(dataset)
        return dataset.add_column("length", [1] * n).add_column("row_index", list(range(n))), []

    def load_model(self, cfg: Config, source: str, labels: list[str] | None, processor):
        from transformers import AutoModelForImageClassification

        return load_pretrained(
            AutoModelForImageClassification,
            source,
            cfg.model,
            **label_config(labels),
            ignore_mismatched_sizes=True,  # a checkpoint's own head (e.g. 1000 ImageNet classes) is replaced
        )

    def head_modules(self, model) -> list[str]:
        return head_modules_of(model)

    def predict(self, model, processor, cfg: Config, labels: list[str] | None, inputs: dict[str, Any]) -> Any:
        from mmkit.tasks.mm_sentiment import predict_one

        if not inputs.get("image"):
            raise UserError("pass the image to classify: mmkit predict RUN --image PATH")
        return predict_one(self, model, processor, cfg, labels, inputs["image"], None)
