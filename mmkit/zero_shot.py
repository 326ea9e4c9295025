"""CLIP zero-shot classification: each row's image (+ text) against label prompts, no training.

The baseline a fine-tune should beat: `mmkit eval --zero-shot openai/clip-vit-base-patch32 --data test.jsonl
--labels negative,neutral,positive` writes the same metrics.json and plots as evaluating a trained run.

Two data forms:
- image+text rows (`mm_sentiment` data): the image and the text are averaged (unit vectors) and scored; with
  `--image-only` the image alone is.
- image-only data (an image folder `root/<label>/*.jpg`, or rows {"image", "label"}): read as an
  `image_classification` dataset, scored with `--image-only`, CLIP's classic "a photo of a {label}." setting.

Prompt ensembles (CLIP paper, section 3.1.4): a label's text embedding is the mean of its templates' unit
embeddings, normalised again. The default ensemble depends on the data: object/scene templates from CLIP's
ImageNet set for image-only data, "a photo that feels {label}" for image+text (sentiment) rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from mmkit.errors import UserError

DEFAULT_PROMPT = "a photo that feels {label}"
# Image+text rows are sentiment data (MVSA and the like): how the photo feels, not what it shows.
SENTIMENT_PROMPTS: tuple[str, ...] = (DEFAULT_PROMPT,)
# Image-only data: a handful of the CLIP paper's 80 ImageNet templates (github.com/openai/CLIP, notebooks/
# Prompt_Engineering_for_ImageNet.ipynb), the plain one first; the ensemble is less sensitive to any one wording.
IMAGE_PROMPTS: tuple[str, ...] = (
    "a photo of a {label}.",
    "a bad photo of a {label}.",
    "a close-up photo of a {label}.",
    "a bright photo of a {label}.",
    "a cropped photo of a {label}.",
    "a photo of the large {label}.",
    "a photo of the small {label}.",
    "itap of a {label}.",
    "art of the {label}.",
)
PLACEHOLDER = "{label}"
_PROMPT_CHUNK = 256  # prompts embedded per forward pass (labels x templates can be thousands)


def render(template: str, label: str) -> str:
    """The prompt for one label (only `{label}` is replaced: other braces are kept as written)."""
    return template.replace(PLACEHOLDER, label)


def check_templates(templates: Sequence[str]) -> list[str]:
    templates = list(templates)
    if not templates:
        raise UserError("no prompt templates given: pass --prompt 'a photo of a {label}.' (or --prompts FILE)")
    for template in templates:
        if not isinstance(template, str) or PLACEHOLDER not in template:
            raise UserError(f"--prompt {template!r} must contain {{label}}, where each label's name goes")
    return templates


def read_prompt_file(path: str | Path) -> list[str]:
    """Templates from a text file, one per line; blank lines and lines starting with `#` are skipped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--prompts {path}: {'a folder, not a file' if path.is_dir() else 'not found'}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"--prompts {path}: not UTF-8 text; give one template per line") from None
    templates = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not templates:
        raise UserError(f"--prompts {path}: no templates in the file; write one per line, each with {{label}}")
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#") and PLACEHOLDER not in line:
            raise UserError(f"--prompts {path} line {number}: {line.strip()!r} must contain {{label}}, where each label's name goes")
    return templates


def label_embeddings(model, tokenizer, labels: list[str], templates: list[str]) -> torch.Tensor:
    """One unit vector per label: the mean of its templates' unit text embeddings, normalised again."""
    prompts = [render(template, label) for label in labels for template in templates]  # label-major
    features = []
    with torch.inference_mode():
        for start in range(0, len(prompts), _PROMPT_CHUNK):
            batch = tokenizer(prompts[start : start + _PROMPT_CHUNK], padding=True, truncation=True, return_tensors="pt")
            features.append(model.get_text_features(**dict(batch)).pooler_output)
    return ensemble(torch.cat(features), len(templates))


def ensemble(features: torch.Tensor, templates_per_label: int) -> torch.Tensor:
    """(labels x templates, dim) label-major text features -> (labels, dim) unit vectors."""
    unit = nn.functional.normalize(features.float(), dim=-1)
    return nn.functional.normalize(unit.view(-1, templates_per_label, unit.shape[-1]).mean(1), dim=-1)


class ZeroShotClip(nn.Module):
    """Logits = CLIP's scaled cosine between the row (image, or image and text averaged) and each label's
    prompt embedding (an ensemble of `templates_per_label` prompts per label, label-major in `prompt_batch`)."""

    def __init__(self, model, prompt_batch, use_text: bool, templates_per_label: int = 1, label_vectors=None):
        super().__init__()
        self.model = model
        self.use_text = use_text
        if label_vectors is None:
            with torch.inference_mode():
                features = model.get_text_features(**prompt_batch).pooler_output
            label_vectors = ensemble(features, templates_per_label)
        self.register_buffer("prompts", label_vectors.clone())

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, labels=None, **_):
        from transformers.modeling_outputs import SequenceClassifierOutput

        query = nn.functional.normalize(self.model.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
        if self.use_text:  # the row's text is evidence too: average the two unit vectors
            if input_ids is None:
                raise UserError("image+text zero-shot scoring got no text: score the images alone (--image-only)")
            text = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            query = nn.functional.normalize(query + nn.functional.normalize(text, dim=-1), dim=-1)
        prompts = self.prompts.to(query.dtype)
        return SequenceClassifierOutput(logits=self.model.logit_scale.exp() * query @ prompts.T)


def _templates(prompt: str | Sequence[str] | None) -> list[str] | None:
    if prompt is None:
        return None
    return check_templates([prompt] if isinstance(prompt, str) else list(prompt))


def zero_shot_eval(
    model_id: str, data: str, labels: list[str] | None, prompt: str | Sequence[str] | None = None, use_text: bool = True,
    split: str = "test", output: str | Path | None = None, batch_size: int = 32, overrides: dict | None = None,
):
    """Evaluate a CLIP checkpoint zero-shot on image(+text) data; returns (task, result, facts, metrics path).

    `prompt`: one template or several (an ensemble), each with `{label}`; None picks the default for the data
    (IMAGE_PROMPTS for image-only data, SENTIMENT_PROMPTS for image+text rows). `use_text=False` scores the
    image alone and reads the data as an image_classification dataset (image folders and {"image", "label"}
    rows work; a text column, if any, is not read).
    """
    from transformers import CLIPModel

    from mmkit.config import load_config
    from mmkit.data import load_split
    from mmkit.models.loading import load_pretrained
    from mmkit.models.multimodal import load_auto_processor
    from mmkit.runs.inference import evaluate_on
    from mmkit.tasks import build_task

    templates = _templates(prompt)
    task_name = "mm_sentiment" if use_text else "image_classification"
    settings = {"task": task_name, "model.name_or_path": model_id, "data.labels": labels, "data.max_length": None}
    cfg = load_config(None, {**settings, **(overrides or {})})
    task = build_task(cfg)  # mm_sentiment: the CLIP image+text family; image_classification: CLIP's vision tower
    if task.spec.family.name != "clip":
        raise UserError(f"{model_id}: zero-shot scoring needs a CLIP checkpoint (image and text in one embedding space)")
    source = task.spec.source

    has_text = _has_text_column(data, split, cfg, load_split)
    if use_text and not has_text:
        what = "an image folder holds no texts" if _is_folder(data) else f"the rows have no '{cfg.data.text_column}' column"
        raise UserError(f"{data}: {what}; pass --image-only to score the images alone against the label prompts")
    if templates is None:
        templates = list(SENTIMENT_PROMPTS if has_text else IMAGE_PROMPTS)

    processor = task.load_processor()  # CLIPProcessor (image+text) or the image processor alone
    tokenizer = processor.tokenizer if use_text else load_auto_processor(source, cfg.model).tokenizer

    def build_model(names: list[str]):
        if labels is None and all(name.isdigit() for name in names):
            raise UserError(
                f"{data}: the labels are bare numbers ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); "
                "the prompts need their names: pass --labels name0,name1,... in class-id order"
            )
        clip = load_pretrained(CLIPModel, source, cfg.model).eval()
        return ZeroShotClip(clip, None, use_text, label_vectors=label_embeddings(clip, tokenizer, names, templates))

    facts = {
        "zero_shot": True, "model": model_id, "task": task_name, "prompts": templates,
        "inputs": "image+text" if use_text else "image",
    }
    return (task, *evaluate_on(task, build_model, processor, labels, data, split, Path(output or "eval-zero-shot"), batch_size, facts))


def _is_folder(data: str) -> bool:
    path = Path(data).expanduser()
    return path.is_dir() and not path.suffix


def _has_text_column(data: str, split: str, cfg, load_split) -> bool:
    """Whether the rows carry a text (image+text data) or only images (a folder, or image/label rows)."""
    if _is_folder(data):
        return False
    return cfg.data.text_column in load_split(data, split, cfg.data.hub_config).dataset.column_names
