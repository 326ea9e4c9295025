"""The model seam: one object owns "this model for this task".

A task names the head it needs (`Task.head`); `model_spec(cfg, head)` reads the checkpoint's config once and
returns the spec that knows how to build the model (pretrained or from scratch, the head, LoRA), how to restore
it from a run folder, which files it saves, and how a user loads it without mmkit (the model card's code).
Tasks never load weights themselves, and nothing guesses whether a folder is a base checkpoint or a run:
`build` starts from the base, `restore` from a run.

Three shapes cover every task x family cell:
- `TransformersSpec`: a transformers Auto class with its own head (sequence, token and image classification,
  seq2seq and causal LMs); `ScratchSpec` is the same built with random weights. A run is a PEFT adapter on the
  base, or a standard checkpoint folder.
- `MeanPooledSpec`: sentence-embedding checkpoints classified from the mean token state, which no transformers
  class does: the encoder plus a linear head (`mmkit.models.pooling`).
- `ImageTextSpec`: an image+text feature encoder (CLIP, BLIP, BLIP-2, LLaVA, Qwen2-VL-style VLMs, two towers: `mmkit.models.multimodal`)
  with an MLP head.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any, ClassVar

from mmkit.config import Config
from mmkit.errors import UserError
from mmkit.models.families import Family, auto_targets, check_targets, family_of, model_id_for_records, resolve_model_path
from mmkit.models.loading import load_config_of, load_pretrained, load_tokenizer, pretrained_kwargs, quiet_transformers
from mmkit.models.lora import attach_lora, save_adapter

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_FILES = (ADAPTER_CONFIG_FILE, "adapter_model.safetensors")
TRANSFORMERS_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors")

# Task head -> the transformers Auto class and the PEFT task type that goes with it.
AUTO_CLASSES = {
    "sequence-classification": ("AutoModelForSequenceClassification", "SEQ_CLS"),
    "token-classification": ("AutoModelForTokenClassification", "TOKEN_CLS"),
    "image-classification": ("AutoModelForImageClassification", None),
    "seq2seq": ("AutoModelForSeq2SeqLM", "SEQ_2_SEQ_LM"),
    "causal": ("AutoModelForCausalLM", "CAUSAL_LM"),
}
HEAD_TEXT = {
    "sequence-classification": "sequence-classification",
    "token-classification": "token-classification",
    "image-classification": "image-classification",
    "generation": "text-generation (seq2seq or causal LM)",
}
# Architectures `model.config.family` builds from scratch, each shown to learn the toy dictionary task to
# BLEU >= 90 (tests/test_translation.py). T5 (BLEU 35) and BART (BLEU 0: eos first) did not, with the same settings.
SCRATCH_FAMILIES = ("marian", "gpt2")


def model_spec(cfg: Config, head: str, base: str | None = None) -> "ModelSpec":
    """The model `cfg.model` describes, with the head a task needs. `base`: load the base checkpoint from
    there instead of model.name_or_path (the same model, e.g. a local copy)."""
    from mmkit.models.quantization import check_quantization

    spec = _model_spec(cfg, head, base)
    check_quantization(cfg, spec)  # refused while the config is checked, before anything is loaded or written
    return spec


def _model_spec(cfg: Config, head: str, base: str | None) -> "ModelSpec":
    model = cfg.model
    if head == "image-text-classification":
        return ImageTextSpec(cfg, base)
    if model.vision or model.text:
        raise UserError("model.text / model.vision describe a two-tower image+text model: use them with task mm_sentiment")
    if model.init == "scratch":
        if head != "generation":
            raise UserError(f"model.init=scratch builds translation models only; task {cfg.task} fine-tunes a pretrained checkpoint")
        if base is None:
            return ScratchSpec(cfg)
        # else: a finished scratch run, a standard checkpoint folder of its own
    source = resolve_model_path(base or model.name_or_path)
    config = load_config_of(source, model)
    if head == "sequence-classification" and _mean_pooled(model.pooling, source):
        return MeanPooledSpec(cfg, source, config)
    return TransformersSpec(cfg, head, source, config)


def _mean_pooled(pooling: str, source: str) -> bool:
    from mmkit.models.pooling import is_sentence_embedding

    return pooling == "mean" or (pooling == "auto" and is_sentence_embedding(source))


class ModelSpec:
    """What every shape shares: where the base is, its family, LoRA, saving, and reading a run back."""

    # Files a run's weights are saved as (patterns): with LoRA, then without. The Hub allow-list is their union.
    adapter_files: ClassVar[tuple[str, ...]] = ADAPTER_FILES
    full_files: ClassVar[tuple[str, ...]] = TRANSFORMERS_FILES
    peft_task_type: str | None = None
    kind: str = "encoder"

    def __init__(self, cfg: Config, source: str, base_id: str | None, family: Family):
        self.model_cfg = cfg.model
        self.lora = cfg.lora
        self.source = source  # where the base checkpoint (and its processor) loads from
        self.base_id = base_id  # what records (adapter config, model card) name as the base; None from scratch
        self.family = family
        precision = cfg.train.mixed_precision
        if precision in ("bf16", "fp16") and family.breaks_in_half_precision:
            raise UserError(
                f"train.mixed_precision={precision} cannot run {family.name} models: {family.breaks_in_half_precision}; "
                "set train.mixed_precision=no (or auto, which keeps this family in fp32)"
            )

    # --- identity ---------------------------------------------------------------------------------------
    @property
    def description(self) -> str:
        return f"{self.base_id or 'trained from scratch'} ({self.family.name})"

    def weight_files(self) -> tuple[str, ...]:
        return self.adapter_files if self.lora.enabled else self.full_files

    def recorded_config(self, cfg: Config) -> Config:
        """The config as the run records it: choices this spec resolved (model.pooling: auto) written out, so
        the run reads back as the same model even where the base's files are not at hand."""
        return cfg

    # --- building and restoring ---------------------------------------------------------------------------
    def load_processor(self, run: Path | None = None, **tokenizer_kwargs):
        """The tokenizer / image processor / multimodal processor: the base's, or the one a run saved.
        `tokenizer_kwargs` go to AutoTokenizer (e.g. add_prefix_space for pre-split words)."""
        raise NotImplementedError

    def build(self, labels: list[str] | None, processor):
        """The base model with this task's new head, ready to train: LoRA attached (the head and any new token
        rows trained in full and saved with the adapter), or every weight trainable with lora.enabled=false."""
        model, heads = self._with_head(labels, processor)
        lora = self.lora
        if not lora.enabled:
            return attach_lora(model, lora, [], False, [], None, [], self.base_id or "", None)
        targets = self.lora_targets(model)
        return attach_lora(
            model, lora, targets, check_targets(model, targets), heads, self.peft_task_type,
            self.new_token_ids(processor), self.base_id or "", self.model_cfg.revision,
        )

    def restore(self, run: Path, labels: list[str] | None, processor):
        """The model a finished run holds, in eval mode: the adapter (and head) on a freshly loaded base, or the
        run's own full weights."""
        if (Path(run) / ADAPTER_CONFIG_FILE).is_file():
            from peft import PeftModel

            model, _ = self._with_head(labels, processor)
            from safetensors import SafetensorError

            try:
                model = PeftModel.from_pretrained(model, str(run))
            except SafetensorError as err:
                raise UserError(f"{Path(run) / ADAPTER_FILES[1]} is not a readable safetensors file ({err}); the file is truncated or corrupt") from None
            except RuntimeError as err:
                if "size mismatch" not in str(err):
                    raise
                raise UserError(
                    f"the adapter in {run} does not fit its base model {self.source} (weight shapes differ): "
                    "load it on the base it was trained on"
                ) from None
        else:
            model = self._load_full(Path(run), labels, processor)
        return model.eval()

    def save(self, model, folder: Path, state_dict: dict | None = None) -> None:
        """The trained weights (adapter + head, or the whole model) as `weight_files()` name them. `state_dict`:
        the full weights gathered from every process (FSDP / ZeRO-3 leave the model itself holding shards)."""
        if hasattr(model, "peft_config"):
            save_adapter(model, folder, state_dict=state_dict)
        else:
            model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)

    def notes(self) -> list[str]:
        """Banner notes on the model (e.g. which parts train)."""
        return []

    def merged_note(self) -> str:
        """What `mmkit merge` wrote, and how to load it."""
        return "loads with transformers Auto classes"

    # --- LoRA -------------------------------------------------------------------------------------------------
    def lora_targets(self, model) -> str | list[str]:
        configured = self.lora.target_modules
        if configured == "auto":
            return auto_targets(model, self.family)
        if isinstance(configured, str) and "," in configured:
            return [t.strip() for t in configured.split(",") if t.strip()]
        return configured

    def new_token_ids(self, processor) -> list[int]:
        """Embedding rows for tokens the checkpoint did not have (model.special_tokens)."""
        return []

    # --- for the subclasses ---------------------------------------------------------------------------------
    def _with_head(self, labels, processor) -> tuple[Any, list[str]]:
        """(the base model with the task head, the names of the new head modules)."""
        raise NotImplementedError

    def _load_full(self, run: Path, labels, processor):
        raise NotImplementedError


def _label_kwargs(labels: list[str] | None) -> dict[str, Any]:
    if not labels:
        return {}
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}


def new_head_modules(model, new_parameters: set[str]) -> list[str]:
    """Top-level modules whose every parameter was newly initialised when the checkpoint loaded: the task head
    (BERT `classifier`; DistilBERT `pre_classifier` and `classifier`; CLIP image classification `classifier`,
    not its vision tower). A checkpoint that already ships the head (e.g. one fine-tuned on 2 labels) loads
    it; then the head is every top-level module beside the backbone.

    PEFT's `modules_to_save` matches name suffixes: a head name that also ends a backbone module's name would
    train and save that module too, so that is refused."""
    from transformers import PreTrainedModel

    children = [(name, child) for name, child in model.named_children() if any(True for _ in child.parameters())]
    heads = [
        name for name, child in children
        if all(f"{name}.{p}" in new_parameters for p, _ in child.named_parameters())
    ]
    if not heads:
        heads = [
            name for name, child in children
            if name != getattr(model, "base_model_prefix", "") and not isinstance(child, PreTrainedModel)
        ]
    others = [n for n, _ in model.named_modules() if n and not any(n == h or n.startswith(h + ".") for h in heads)]
    for head in heads:
        clashes = [n for n in others if n.endswith(head)]
        if clashes:
            raise UserError(
                f"the head module {head!r} of this model is also the end of {clashes[:2]}: PEFT would train and save "
                "those too; use lora.enabled=false for this checkpoint"
            )
    return heads


# ----------------------------------------------------------------------------------------------------------
class TransformersSpec(ModelSpec):
    """A transformers Auto class with its own task head."""

    def __init__(self, cfg: Config, head: str, source: str, config, *, family: Family | None = None):
        import transformers

        model_type = getattr(config, "model_type", "")
        family = family or family_of(model_type)
        recorded = None if cfg.model.init == "scratch" else model_id_for_records(cfg.model.name_or_path)
        super().__init__(cfg, source, recorded, family)
        self.config = config
        self.head = head
        if head == "generation":
            head = "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
        auto_name, self.peft_task_type = AUTO_CLASSES[head]
        self.auto_class = getattr(transformers, auto_name)
        if type(config) not in self.auto_class._model_mapping:
            raise UserError(
                f"{cfg.model.name_or_path or source} is a '{model_type}' model, and transformers has no "
                f"{HEAD_TEXT[self.head]} head for it ({auto_name}); {_what_fits(self.head)}"
            )
        from mmkit.models.multimodal.vlm_table import ARCHITECTURES as IMAGE_TEXT_TO_TEXT

        if model_type in IMAGE_TEXT_TO_TEXT:
            # Gemma 3 has sequence-classification and causal-LM classes, but they are the image+text model
            # (vision tower, projector, token_type_ids): mmkit builds it through the image+text family only.
            raise UserError(
                f"{cfg.model.name_or_path or source} is a '{model_type}' image-text-to-text model: mmkit fine-tunes it "
                f"on task mm_sentiment; {_what_fits(self.head)}"
            )
        causal_by_name = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in getattr(config, "architectures", None) or [])
        if head == "causal" and family.kind != "decoder" and (family.lora_targets or not causal_by_name):
            # BERT-style encoders have a causal-LM class in transformers, but they read both directions.
            raise UserError(
                f"{cfg.model.name_or_path or source} is a '{model_type}' model, an encoder: it cannot generate "
                f"text; {_what_fits('generation')}"
            )
        self.kind = {"seq2seq": "seq2seq", "causal": "decoder", "image-classification": "vision"}.get(head, family.kind)
        self.vision = self.kind == "vision"  # an image processor, no tokenizer

    # --- processor ------------------------------------------------------------------------------------------
    def load_processor(self, run: Path | None = None, **tokenizer_kwargs):
        if self.vision:
            return _image_processor(str(run or self.source), self.model_cfg)
        if run is not None:  # a finished run: its own tokenizer, added tokens included
            return load_tokenizer(str(run), self.model_cfg, **tokenizer_kwargs)
        tokenizer = load_tokenizer(self.model_cfg.tokenizer or self.source, self.model_cfg, **tokenizer_kwargs)
        new = [tok for tok in self.model_cfg.special_tokens or [] if tok not in tokenizer.get_vocab()]
        if new:
            tokenizer.add_tokens(new, special_tokens=True)
        return tokenizer

    def new_token_ids(self, processor) -> list[int]:
        if self.vision:
            return []
        vocab = self._vocab_size()
        return list(range(vocab, len(processor))) if vocab and len(processor) > vocab else []

    def _vocab_size(self) -> int | None:
        config = self.config
        return getattr(config, "vocab_size", None) or getattr(getattr(config, "text_config", None), "vocab_size", None)

    # --- model ----------------------------------------------------------------------------------------------
    def recorded_config(self, cfg: Config) -> Config:
        if self.head != "sequence-classification":
            return cfg
        recorded = copy.deepcopy(cfg)
        recorded.model.pooling = "model"  # the checkpoint's own head, not the mean of the token states
        return recorded

    def _head_kwargs(self, labels, processor) -> dict[str, Any]:
        kwargs = _label_kwargs(labels) if self.head != "generation" else {}
        if self.head in ("sequence-classification", "token-classification"):
            kwargs["pad_token_id"] = processor.pad_token_id  # decoder checkpoints (GPT-2) ship none
        if self.head == "image-classification":
            kwargs["ignore_mismatched_sizes"] = True  # a checkpoint's own head (e.g. 1000 ImageNet classes) is replaced
        return kwargs

    def _with_head(self, labels, processor):
        model, new = load_pretrained(self.auto_class, self.source, self.model_cfg, loading_info=True, **self._head_kwargs(labels, processor))
        self._fit_tokens(model, processor)
        return model, ([] if self.head == "generation" else new_head_modules(model, new))

    def _load_full(self, run: Path, labels, processor):
        kwargs = {k: v for k, v in self._head_kwargs(labels, processor).items() if k == "pad_token_id"}
        model = load_pretrained(self.auto_class, str(run), self.model_cfg, what="run's model", **kwargs)
        self._fit_tokens(model, processor)
        return model

    def _fit_tokens(self, model, processor) -> None:
        """New tokens (model.special_tokens) get embedding rows (initialised from the mean); a generating model
        gets the tokenizer's pad token."""
        if self.vision:
            return
        if len(processor) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(processor))
        if self.head == "generation":
            for config in (model.config, model.generation_config):
                if getattr(config, "pad_token_id", None) is None:
                    config.pad_token_id = processor.pad_token_id

    def merged_note(self) -> str:
        return f"loads with transformers.{self.auto_class.__name__}"



def _what_fits(head: str) -> str:
    return {
        "sequence-classification": "sentiment needs a text model (BERT-, GPT- or T5-style)",
        "token-classification": "NER needs a text encoder or decoder (BERT-, GPT-style)",
        "image-classification": "image classification needs a vision model (ViT, CLIP)",
        "generation": "translation needs an encoder-decoder (Marian, T5, BART) or a decoder-only (GPT-2, Llama) model",
    }[head]


def _image_processor(source: str, model_cfg):
    from transformers import AutoImageProcessor

    quiet_transformers()
    try:
        return AutoImageProcessor.from_pretrained(source, **pretrained_kwargs(model_cfg, with_dtype=False))
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"could not load the image processor from '{source}': {' '.join(str(err).split())[:300]}") from None


# ----------------------------------------------------------------------------------------------------------
class ScratchSpec(TransformersSpec):
    """A translation model with random weights: the architecture of model.name_or_path's config.json, or of
    model.config, sized to the tokenizer. Every weight trains (there is nothing pretrained to adapt)."""

    def __init__(self, cfg: Config):
        model = cfg.model
        if cfg.lora.enabled:
            raise UserError("model.init=scratch trains every weight from random values: set lora.enabled=false")
        if not model.tokenizer and not model.name_or_path:
            raise UserError(
                "model.init=scratch needs a tokenizer: set model.tokenizer to a folder made by "
                "`mmkit tokenizer train` (or model.name_or_path to a checkpoint with one)"
            )
        if model.name_or_path:
            config = load_config_of(resolve_model_path(model.name_or_path), model)
        else:
            if model.config.family not in SCRATCH_FAMILIES:
                raise UserError(
                    f"model.init=scratch without model.name_or_path needs model.config.family: one of {', '.join(SCRATCH_FAMILIES)} "
                    f"(got {model.config.family!r}); or set model.name_or_path to a checkpoint whose config.json is used"
                )
            if model.config.d_model % model.config.heads:
                raise UserError(f"model.config.d_model ({model.config.d_model}) must be a multiple of model.config.heads ({model.config.heads})")
            config = _family_config(model.config.family)
        source = model.tokenizer or resolve_model_path(model.name_or_path)
        super().__init__(cfg, "generation", source, config)

    @property
    def description(self) -> str:
        cfg = self.model_cfg
        return f"{cfg.name_or_path or cfg.config.family} from scratch, tokenizer {cfg.tokenizer or cfg.name_or_path}"

    def _with_head(self, labels, processor):
        model = self.auto_class.from_config(self._sized_config(processor))
        self._fit_tokens(model, processor)
        return model, []

    def _sized_config(self, tokenizer):
        from transformers import GPT2Config, MarianConfig

        ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        vocab = len(tokenizer)
        if self.model_cfg.name_or_path:
            config = copy.deepcopy(self.config)  # the spec's own record of the checkpoint stays as read
            config.vocab_size = vocab
            for key, value in ids.items():
                setattr(config, key, value)
            if getattr(config, "is_encoder_decoder", False) and config.model_type in ("marian", "t5", "mt5"):
                config.decoder_start_token_id = tokenizer.pad_token_id  # these families start decoding from pad
            return config
        a = self.model_cfg.config
        if a.family == "marian":
            return MarianConfig(
                vocab_size=vocab, d_model=a.d_model, encoder_layers=a.layers, decoder_layers=a.layers,
                encoder_attention_heads=a.heads, decoder_attention_heads=a.heads, encoder_ffn_dim=a.ffn_dim,
                decoder_ffn_dim=a.ffn_dim, max_position_embeddings=a.max_positions, dropout=a.dropout,
                attention_dropout=a.dropout, activation_dropout=0.0, bos_token_id=bos,
                # Token embeddings start at std 0.02; unscaled, Marian's fixed sinusoidal positions (amplitude 1)
                # drown them and a scratch model never learns which word it reads (measured: BLEU 2 on the toy task).
                scale_embedding=True, forced_eos_token_id=ids["eos_token_id"],
                decoder_start_token_id=ids["pad_token_id"], **ids,
            )
        return GPT2Config(
            vocab_size=vocab, n_embd=a.d_model, n_layer=a.layers, n_head=a.heads, n_inner=a.ffn_dim,
            n_positions=a.max_positions, resid_pdrop=a.dropout, embd_pdrop=a.dropout, attn_pdrop=a.dropout,
            bos_token_id=bos, **ids,
        )


def _family_config(family: str):
    """An (unsized) config of a scratch family: enough to pick the Auto class before the tokenizer is known."""
    from transformers import GPT2Config, MarianConfig

    return MarianConfig() if family == "marian" else GPT2Config()


# ----------------------------------------------------------------------------------------------------------
class MeanPooledSpec(ModelSpec):
    """Sentence-embedding checkpoints: the encoder's mean token state -> a linear classifier."""

    peft_task_type = "SEQ_CLS"

    def __init__(self, cfg: Config, source: str, config):
        from mmkit.models.pooling import HEAD_FILE

        super().__init__(cfg, source, model_id_for_records(cfg.model.name_or_path), family_of(config.model_type))
        self.config = config
        self.full_files = TRANSFORMERS_FILES + (HEAD_FILE,)

    @property
    def description(self) -> str:
        return f"{self.base_id} ({self.family.name}, mean-pooled)"

    def recorded_config(self, cfg: Config) -> Config:
        recorded = copy.deepcopy(cfg)
        recorded.model.pooling = "mean"
        return recorded

    def load_processor(self, run: Path | None = None, **tokenizer_kwargs):
        return load_tokenizer(str(run or self.model_cfg.tokenizer or self.source), self.model_cfg, **tokenizer_kwargs)

    def _encoder(self, source: str, labels):
        from transformers import AutoModel

        kwargs = _label_kwargs(labels)  # the saved encoder config names the classes too
        encoder_class = AutoModel._model_mapping.get(type(self.config), None)
        if encoder_class is not None and "add_pooling_layer" in inspect.signature(encoder_class.__init__).parameters:
            kwargs["add_pooling_layer"] = False  # the [CLS] pooler is never used (and would get no gradient under DDP)
        return load_pretrained(AutoModel, source, self.model_cfg, **kwargs)

    def _with_head(self, labels, processor):
        from mmkit.models.pooling import MeanPooledClassifier

        return MeanPooledClassifier(self._encoder(self.source, labels), len(labels)), ["classifier"]

    def _load_full(self, run: Path, labels, processor):
        from mmkit.models.pooling import MeanPooledClassifier

        from mmkit.models.pooling import HEAD_FILE

        if not (run / HEAD_FILE).is_file():  # else the classifier would stay random, silently
            raise UserError(f"{run} holds no {HEAD_FILE}: the classifier of this mean-pooled run is missing; copy the whole run folder")
        model = MeanPooledClassifier(self._encoder(str(run), labels), len(labels))
        model.load_head(run)
        return model

    def merged_note(self) -> str:
        from mmkit.models.pooling import HEAD_FILE

        return (
            f"the encoder loads with transformers.AutoModel and the classifier from {HEAD_FILE} (the mean of the "
            "token states feeds it; no transformers class pools that way): see the model card's code"
        )



# ----------------------------------------------------------------------------------------------------------
class ImageTextSpec(ModelSpec):
    """An image+text family's feature encoder with an MLP head (`model.head_hidden`, `model.head_dropout`)."""

    kind = "image-text"

    def __init__(self, cfg: Config, base: str | None = None):
        from mmkit.models.multimodal import encoder_class, family_for
        from mmkit.models.multimodal.classifier import FULL_WEIGHTS_FILE

        model = cfg.model
        two_tower = bool(model.vision)
        source = resolve_model_path(base or (model.text if two_tower else model.name_or_path))
        self.encoder_class = encoder_class(family_for(model, source))
        family = Family(self.encoder_class.family, (), (), kind="image-text")
        super().__init__(cfg, source, model_id_for_records(model.text if two_tower else model.name_or_path), family)
        self.full_files = (FULL_WEIGHTS_FILE,)
        self.towers = self.encoder_class.check_towers(cfg.lora.towers)

    @property
    def description(self) -> str:
        if self.model_cfg.vision:
            return f"{self.base_id} + {self.model_cfg.vision} (two towers)"
        return f"{self.base_id} ({self.family.name})"

    def load_processor(self, run: Path | None = None, **_tokenizer_kwargs):
        return self.encoder_class.load_processor(self.model_cfg, self.source, run)

    def _with_head(self, labels, processor):
        from mmkit.models.multimodal.classifier import HEAD_NAME, MultimodalClassifier
        from mmkit.models.quantization import prepare_quantized

        encoder = self.encoder_class.load(self.model_cfg, self.source)
        if self.model_cfg.quantization:  # only families with one `model` allow it (supports_quantization)
            prepare_quantized(encoder.model)
        model = MultimodalClassifier(encoder, len(labels), self.model_cfg.head_hidden, self.model_cfg.head_dropout)
        return model, [HEAD_NAME, *encoder.extra_trainable_modules(self.model_cfg)]

    def _load_full(self, run: Path, labels, processor):
        from safetensors import SafetensorError

        from mmkit.models.multimodal.classifier import FULL_WEIGHTS_FILE

        if not (run / FULL_WEIGHTS_FILE).is_file():
            raise UserError(f"{run} holds neither an adapter nor {FULL_WEIGHTS_FILE}: no trained weights to load")
        model, _ = self._with_head(labels, processor)
        try:
            model.load_full_weights(run)
        except SafetensorError as err:
            raise UserError(f"{run / FULL_WEIGHTS_FILE} is not a readable safetensors file ({err}); the file is truncated or corrupt") from None
        return model

    def notes(self) -> list[str]:
        note = self.encoder_class.training_note(self.towers, self.model_cfg, self.lora.enabled)
        return [note] if note else []

    def lora_targets(self, model):
        if self.lora.target_modules == "auto":  # only the towers lora.towers names (a regex that cannot reach the others)
            return model.encoder.lora_regex(self.towers)
        return super().lora_targets(model)

    def merged_note(self) -> str:
        from mmkit.models.multimodal.classifier import FULL_WEIGHTS_FILE

        return (
            f"all weights in {FULL_WEIGHTS_FILE}: an mmkit run (lora.enabled=false) that `mmkit predict/eval` and "
            "mmkit.runs.load_trained read; the fused image+text features have no transformers class"
        )



def all_weight_files() -> tuple[str, ...]:
    """Every file name (pattern) any spec saves weights as: the Hub allow-list's weight part."""
    from mmkit.models.multimodal.classifier import FULL_WEIGHTS_FILE
    from mmkit.models.pooling import HEAD_FILE

    return tuple(dict.fromkeys(ADAPTER_FILES + TRANSFORMERS_FILES + (HEAD_FILE, FULL_WEIGHTS_FILE)))
