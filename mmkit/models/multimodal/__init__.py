"""Image+text backbone families: which one a checkpoint (or a two-tower config) is, and loading its processor."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from mmkit.errors import UserError

from mmkit.models.multimodal.vlm_table import ARCHITECTURES as VLM_ARCHITECTURES

# family -> "module:Class"; a checkpoint's config.json `model_type` picks the family.
FAMILIES = {
    "clip": "mmkit.models.multimodal.clip:ClipEncoder",
    "blip": "mmkit.models.multimodal.blip:BlipEncoder",
    "blip2": "mmkit.models.multimodal.blip2:Blip2Encoder",
    "llava": "mmkit.models.multimodal.llava:LlavaEncoder",
    "two_tower": "mmkit.models.multimodal.two_tower:TwoTowerEncoder",
    # Image-text-to-text models (Qwen2-VL, LLaVA-NeXT, Idefics3, Gemma 3, ...): one generic family whose
    # per-architecture facts are a table (vlm_table.py); each model type names its own encoder class.
    **{model_type: f"mmkit.models.multimodal.vlm:{model_type}" for model_type in VLM_ARCHITECTURES},
}
MODEL_TYPES = {"clip": "clip", "blip": "blip", "blip-2": "blip2", "llava": "llava", **{t: t for t in VLM_ARCHITECTURES}}


def encoder_class(name: str):
    module_name, class_name = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def family_for(model_cfg, source: str | None) -> str:
    """`two_tower` when model.vision is set, else the family of the checkpoint's model_type."""
    if model_cfg.vision:
        return "two_tower"
    if model_cfg.text:
        raise UserError("model.text is set but model.vision is not: a two-tower model needs both (or use model.name_or_path)")
    model_type = checkpoint_model_type(source, model_cfg)
    if model_type not in MODEL_TYPES:
        known = ", ".join(sorted(MODEL_TYPES))
        raise UserError(
            f"{source}: a '{model_type}' checkpoint is not an image+text model mmkit knows (model types: {known}); "
            "for a text encoder + image encoder pair set model.text and model.vision"
        )
    return MODEL_TYPES[model_type]


def checkpoint_model_type(source: str | None, model_cfg) -> str:
    if not source:
        raise UserError("set model.name_or_path to an image+text checkpoint (CLIP, BLIP, BLIP-2, LLaVA, Qwen2-VL, SmolVLM, ...), or model.text + model.vision")
    local = Path(source) / "config.json"
    if local.is_file():
        return json.loads(local.read_text(encoding="utf-8")).get("model_type", "")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code).model_type
    except (OSError, ValueError) as err:
        raise UserError(f"could not read the config of '{source}': {' '.join(str(err).split())[:200]}") from None


def load_auto_processor(source: str, model_cfg):
    from transformers import AutoProcessor

    from mmkit.models.loading import pretrained_kwargs, quiet_transformers

    quiet_transformers()
    try:
        return AutoProcessor.from_pretrained(source, **pretrained_kwargs(model_cfg, with_dtype=False))
    except ImportError as err:  # a processor part that needs a package this machine lacks (e.g. torchvision)
        raise UserError(f"the processor of '{source}' needs a package that is not installed: {' '.join(str(err).split())[:200]}") from None
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"could not load the processor from '{source}': {' '.join(str(err).split())[:300]}") from None
