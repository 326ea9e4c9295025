"""Modern image-text-to-text models (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-NeXT, LLaVA-OneVision, Idefics3,
SmolVLM, Gemma 3) as one family.

Each loads with `AutoModelForImageTextToText`; its processor expands the image placeholder into as many
tokens as the image gives features (a number that varies per image for dynamic-resolution models) and has a
chat template. The feature is the language model's state at the last real token: under causal attention it is
the one position that has read the image and the whole text (as for LLaVA). What differs between
architectures is data, kept in `ARCHITECTURES` (mmkit/models/multimodal/vlm_table.py): the extra inputs the
model needs, where its vision tower / projector / language model live, and its LoRA target names.
"""

from __future__ import annotations

import inspect
from functools import cache

from mmkit.errors import UserError
from mmkit.models.multimodal.base import FeatureEncoder, last_token_states, regex_under
from mmkit.models.multimodal.vlm_table import ARCHITECTURES, Architecture

BASE_INPUTS = ("input_ids", "attention_mask", "pixel_values")


class VlmEncoder(FeatureEncoder):
    """The generic family; `VlmEncoder.of(model_type)` is its subclass for one architecture."""

    arch: Architecture
    towers = ("language", "vision")
    default_towers = ("language",)
    supports_quantization = True

    def __init__(self, model):
        super().__init__()
        self.model = model  # the XModel inside XForConditionalGeneration: vision tower, projector, LM (no LM head)
        self.feature_dim = model.config.get_text_config().hidden_size

    @classmethod
    @cache
    def of(cls, model_type: str) -> type["VlmEncoder"]:
        arch = ARCHITECTURES[model_type]
        return type(f"VlmEncoder[{model_type}]", (cls,), {"arch": arch, "family": model_type})

    # --- loading ----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, model_cfg, source: str) -> "VlmEncoder":
        from transformers import AutoModelForImageTextToText

        from mmkit.models.loading import load_pretrained

        # Saved as XForConditionalGeneration; only its inner model is kept (the LM head is not used). Under
        # model.quantization the projector/merger stays in model.dtype, so model.train_projector can train it.
        return cls(load_pretrained(AutoModelForImageTextToText, source, model_cfg, unquantized=cls.arch.projector).model)

    @classmethod
    def load_processor(cls, model_cfg, source: str, run=None):
        import transformers

        from mmkit.models.loading import pretrained_kwargs, quiet_transformers

        quiet_transformers()
        folder = str(run or source)
        processor_class = _image_only(getattr(transformers, cls.arch.processor))
        try:
            processor = processor_class.from_pretrained(folder, **pretrained_kwargs(model_cfg, with_dtype=False))
        except ImportError as err:
            raise UserError(f"the processor of '{folder}' needs a package that is not installed: {' '.join(str(err).split())[:200]}") from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"could not load the {cls.arch.processor} from '{folder}': {' '.join(str(err).split())[:300]}") from None
        if not getattr(processor, "chat_template", None):
            raise UserError(
                f"'{folder}' has no chat template: a {cls.arch.name} checkpoint places the image through it; use the "
                "instruct checkpoint's processor (chat_template.jinja beside processor_config.json)"
            )
        if run is None:  # a run's processor already holds the sizes it trained with
            cls._apply_pixel_limits(processor, model_cfg)
        return processor

    @classmethod
    def _apply_pixel_limits(cls, processor, model_cfg) -> None:
        """model.min_pixels / model.max_pixels -> the image processor's own size keys (dynamic resolution only)."""
        if not cls.arch.pixel_limits:
            if model_cfg.min_pixels or model_cfg.max_pixels:
                raise UserError(
                    f"model.min_pixels / model.max_pixels resize images for Qwen2-VL-style models; a {cls.arch.name} "
                    "model gives a fixed number of image tokens per image or tile: leave them empty"
                )
            return
        low, high = model_cfg.min_pixels or cls.arch.pixel_limits[0], model_cfg.max_pixels or cls.arch.pixel_limits[1]
        if low > high:
            raise UserError(f"model.min_pixels ({low}) is more than model.max_pixels ({high})")
        image_processor = processor.image_processor
        image_processor.size = {**dict(image_processor.size or {}), "shortest_edge": low, "longest_edge": high}

    # --- inputs -----------------------------------------------------------------------------------------
    @classmethod
    def prompts(cls, processor, texts, model_cfg) -> list[str]:
        return [
            processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": model_cfg.prompt.format(text=t)}]}],
                add_generation_prompt=True, tokenize=False,
            )
            for t in texts
        ]

    @classmethod
    def image_token_id(cls, processor) -> int:
        # Gemma 3's processor names <start_of_image> as its image token; the features replace the soft tokens.
        return processor.tokenizer.image_token_id if cls.arch.tokenizer_image_token else processor.image_token_id

    @classmethod
    def image_tokens(cls, processor, sizes: list[tuple[int, int]]) -> list[int]:
        """Image tokens the processor gives each image of (height, width): what its features will fill."""
        if "pixel_attention_mask" in cls.arch.inputs:
            # Idefics3 / SmolVLM (tiled): image_seq_len per tile (the rows x cols tiles + the global view, or one view when
            # the image is not split). Not `_get_num_multimodal_tokens`: Idefics3's counts the tile tags around them.
            tiles = [processor.image_processor.get_number_of_image_patches(h, w, {})[0] for h, w in sizes]
            return [max(n, 1) * processor.image_seq_len for n in tiles]
        return list(processor._get_num_multimodal_tokens(image_sizes=[list(s) for s in sizes]).num_image_tokens)

    @classmethod
    def row_image_tokens(cls, processor, batch, images) -> list[int]:
        """Per row, the image features the model will compute from this batch."""
        if "pixel_attention_mask" in batch:
            # Idefics3 / SmolVLM (tiled, padded, hence the mask; Gemma 3 also nests images but has one view per
            # image): each real tile (the model skips the all-zero padding tiles) gives image_seq_len
            pixels = batch["pixel_values"]
            tiles = (pixels != 0).flatten(2).any(-1).sum(-1)
            return [int(n) * processor.image_seq_len for n in tiles]
        return cls.image_tokens(processor, [(image.height, image.width) for image in images])

    @classmethod
    def preprocess(cls, processor, images, texts, model_cfg):
        per_row = [[image] for image in images] if cls.arch.nested_images else images
        prompts = cls.prompts(processor, texts, model_cfg)
        # A template that writes the BOS itself (Gemma 3) must not get a second one from the tokenizer: the rule
        # the processor's own apply_chat_template(tokenize=True) follows.
        bos = processor.tokenizer.bos_token
        own_bos = {"add_special_tokens": False} if bos and prompts[0].startswith(bos) else {}
        batch = dict(processor(images=per_row, text=prompts, return_tensors="pt", padding=True, **own_bos))
        expected = cls.row_image_tokens(processor, batch, images)
        counts = (batch["input_ids"] == cls.image_token_id(processor)).sum(-1).tolist()
        for row, (count, wanted) in enumerate(zip(counts, expected)):
            # Per row: the model only checks the batch total, so a row short of tokens and another with extra
            # would run, each reading part of the other's image.
            if count != wanted:
                raise UserError(
                    f"{cls.arch.name}: row {row + 1} of the batch has {count} image placeholder tokens where its "
                    f"{images[row].width}x{images[row].height} image gives {wanted} features; the processor must expand "
                    "the image token (check the chat template keeps the image and the processor config matches the model)"
                )
        missing = [key for key in cls.arch.inputs if key not in batch]
        if missing:
            raise UserError(f"{cls.arch.name}: the processor gave no {', '.join(missing)}, which the model needs; is this the checkpoint's own processor?")
        return {k: v for k, v in batch.items() if k in BASE_INPUTS + cls.arch.inputs}

    @classmethod
    def image_notes(cls, processor, images: list) -> list[str]:
        from mmkit.data.images import upright_size

        counts = cls.image_tokens(processor, [upright_size(image) for image in images])
        if not counts:
            return []
        return [f"image tokens per image: {min(counts)} to {max(counts)} (mean {sum(counts) / len(counts):.0f})"]

    # --- what trains --------------------------------------------------------------------------------------
    def lora_regex(self, towers):
        arch = self.arch
        regexes = [regex_under(f"encoder.{arch.language}", arch.language_targets)]
        if "vision" in towers:
            regexes.append(regex_under(f"encoder.{arch.vision}", arch.vision_targets))
        return "|".join(regexes) if "language" in towers else "|".join(regexes[1:])

    def extra_trainable_modules(self, model_cfg) -> list[str]:
        if not model_cfg.train_projector:
            return []
        import torch

        names = []
        for suffix in self.arch.projector:
            for name, module in self.model.named_modules():
                if name == suffix or name.endswith("." + suffix):
                    # PEFT's modules_to_save cannot wrap a ModuleList (Qwen3-VL's DeepStack mergers): name its items
                    items = [f"{suffix}.{i}" for i in range(len(module))] if isinstance(module, torch.nn.ModuleList) else [suffix]
                    names += [n for n in items if n not in names]
        return names

    @classmethod
    def training_note(cls, towers: list[str], model_cfg, lora_enabled: bool) -> str:
        """What trains, said in the banner: a frozen projector is otherwise easy to miss."""
        if not lora_enabled:
            return "trains: every weight (vision tower, projector, language model)"
        projector = "/".join(cls.arch.projector)
        trained = ["LoRA on the " + " and the ".join({"language": "language model", "vision": "vision tower"}[t] for t in towers)]
        frozen = [] if "vision" in towers else ["the vision tower (lora.towers=[language,vision] adapts it)"]
        if model_cfg.train_projector:
            trained.append(f"the projector ({projector}) in full")
        else:
            frozen.append(f"the projector ({projector}; model.train_projector=true trains it)")
        return "trains: " + ", ".join(trained) + (f"; frozen: {', '.join(frozen)}" if frozen else "")

    # --- forward ------------------------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask, **inputs):
        extra = {k: v for k, v in inputs.items() if k in ("pixel_values",) + self.arch.inputs}
        try:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        except ValueError as err:
            if "do not match" not in str(err):
                raise
            # Inputs built without the processor: never run with the image left out.
            raise UserError(f"{self.arch.name}: {' '.join(str(err).split())[:200]}; build the inputs with the checkpoint's processor") from None
        return last_token_states(hidden, attention_mask)


def _image_only(processor_class):
    """The processor without its video part: the video processors need torchvision, and rows have no video."""
    signature = inspect.signature(processor_class.__init__)
    if "video_processor" not in signature.parameters:
        return processor_class
    # transformers reads a processor's parts and settings (image_seq_len, ...) from its __init__'s own argument
    # names (co_varnames, not a signature), so the image-only __init__ is written out with the same arguments.
    names = [n for n, p in signature.parameters.items() if n not in ("self", "video_processor") and p.kind == p.POSITIONAL_OR_KEYWORD]
    defaults = {n: (None if signature.parameters[n].default is inspect.Parameter.empty else signature.parameters[n].default) for n in names}
    source = (
        f"def __init__(self, {', '.join(f'{n}=defaults[{n!r}]' for n in names)}, **kwargs):\n"
        f"    base(self, {', '.join(f'{n}={n}' for n in names)}, video_processor=None, **kwargs)\n"
    )
    namespace = {"defaults": defaults, "base": processor_class.__init__}
    exec(source, namespace)  # noqa: S102 - our own generated code, built from argument names only

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        from transformers import ProcessorMixin

        # SmolVLM's override only adds its video processor's frame defaults: the rendering is the mixin's.
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

    # Same name: the processor_config.json a run saves names the transformers class, which loads it elsewhere.
    return type(processor_class.__name__, (processor_class,), {
        "__init__": namespace["__init__"], "apply_chat_template": apply_chat_template, "__module__": processor_class.__module__,
    })


_image_only = cache(_image_only)


def __getattr__(name: str):
    """`mmkit.models.multimodal.vlm:<model_type>` (the FAMILIES entry) is that architecture's encoder class."""
    if name in ARCHITECTURES:
        return VlmEncoder.of(name)
    raise AttributeError(name)
