"""The code a model card shows: how to load a run and predict, with plain transformers (+ PEFT) where a
transformers class can hold the model, and with mmkit's Python API where none can (image+text features).

The code is generated from the run's task and model spec, so it loads exactly what the run saved; the
conformance test (tests/test_matrix.py) executes it for every task x family cell and compares its prediction
with `mmkit predict`.
"""

from __future__ import annotations

import inspect
import json

from mmkit.tasks.base import Task


def usage_code(task: Task, repo_id: str, labels: list[str] | None, adapter: bool) -> tuple[str, str]:
    """(a short label for the section heading, the Python code)."""
    from mmkit.models.spec import ImageTextSpec, MeanPooledSpec

    spec = task.spec
    if isinstance(spec, ImageTextSpec):
        return "mmkit (Python)", _mmkit_code(task, repo_id)
    if isinstance(spec, MeanPooledSpec):
        return "plain transformers" + (" + PEFT" if adapter else ""), _mean_pooled_code(task, repo_id, labels, adapter)
    return "plain transformers" + (" + PEFT" if adapter else ""), _transformers_code(task, repo_id, labels, adapter)


def mmkit_commands(task: Task, repo_id: str) -> str:
    example = task.example_input
    args = []
    if "text" in example:
        args.append(json.dumps(example["text"], ensure_ascii=False))
    if "image" in example:
        args.append(f"--image {example['image']}")
    lines = [
        f"mmkit predict {repo_id} {' '.join(args)}",
        f"mmkit eval {repo_id} --data test.jsonl",
    ]
    if task.spec.lora.enabled:
        lines.append(f"mmkit merge {repo_id} --output merged/   # LoRA folded into the base: {task.spec.merged_note()}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _transformers_code(task: Task, repo_id: str, labels, adapter: bool) -> str:
    spec = task.spec
    auto = spec.auto_class.__name__
    vision = spec.vision
    processor_class = "AutoImageProcessor" if vision else "AutoTokenizer"
    processor_var = "processor" if vision else "tokenizer"
    lines = ["import torch"]
    if vision:
        lines.append("from PIL import Image")
    if adapter:
        lines.append("from peft import PeftModel")
    lines += [f"from transformers import {auto}, {processor_class}", ""]
    lines.append(f"{processor_var} = {processor_class}.from_pretrained({_q(repo_id)})")
    if adapter:
        args = [_q(spec.base_id)]
        if labels and spec.head != "generation":
            args.append(f"num_labels={len(labels)}")
        if spec.head in ("sequence-classification", "token-classification"):
            args.append("pad_token_id=tokenizer.pad_token_id")
        if spec.head == "image-classification":
            args.append("ignore_mismatched_sizes=True")
        lines.append(f"model = {auto}.from_pretrained({', '.join(args)})")
        if spec.model_cfg.special_tokens and not vision:
            lines += [
                "if len(tokenizer) > model.get_input_embeddings().num_embeddings:  # tokens the run added",
                "    model.resize_token_embeddings(len(tokenizer))",
            ]
        lines.append(f"model = PeftModel.from_pretrained(model, {_q(repo_id)}).eval()")
    else:
        lines.append(f"model = {auto}.from_pretrained({_q(repo_id)}).eval()")
    lines.append("")
    lines += _predict_lines(task, labels)
    return "\n".join(lines)


def _predict_lines(task: Task, labels) -> list[str]:
    spec = task.spec
    example = task.example_input
    if spec.head == "sequence-classification":
        return [
            f"labels = {labels!r}",
            f"inputs = tokenizer({_q(example['text'])}, return_tensors=\"pt\")",
            "with torch.no_grad():",
            "    probs = model(**inputs).logits.softmax(-1)[0]",
            "print(labels[int(probs.argmax())], dict(zip(labels, probs.tolist())))",
        ]
    if spec.head == "image-classification":
        return [
            f"labels = {labels!r}",
            f"inputs = processor(images=Image.open({_q(example['image'])}).convert(\"RGB\"), return_tensors=\"pt\")",
            "with torch.no_grad():",
            "    probs = model(**inputs).logits.softmax(-1)[0]",
            "print(labels[int(probs.argmax())], dict(zip(labels, probs.tolist())))",
        ]
    if spec.head == "token-classification":
        return [
            f"labels = {labels!r}",
            f"words = {_q(example['text'])}.split()",
            "inputs = tokenizer(words, is_split_into_words=True, return_tensors=\"pt\")",
            "with torch.no_grad():",
            "    predicted = model(**inputs).logits.argmax(-1)[0].tolist()",
            "tags, seen = [], set()",
            "for position, word in enumerate(inputs.word_ids()):",
            "    if word is not None and word not in seen:  # a word's first sub-token carries its tag",
            "        seen.add(word)",
            "        tags.append(labels[predicted[position]])",
            "print(list(zip(words, tags)))",
        ]
    return _generation_lines(task)


def _generation_lines(task: Task) -> list[str]:
    from mmkit.tasks.translation import split_template

    t = task.cfg.translation
    source = example_source = task.example_input["text"]
    marker = f"{t.target_lang_token} " if t.target_lang_token and t.target_lang_token.startswith(">>") else ""
    source = f"{marker}{t.source_prefix}{example_source}"
    settings = [f"max_new_tokens={t.max_new_tokens}", f"num_beams={t.num_beams}", "do_sample=False"]
    if t.num_beams > 1:
        settings.append(f"length_penalty={t.length_penalty}")
    lines = []
    forced = t.target_lang_token if t.target_lang_token and not t.target_lang_token.startswith(">>") else None
    if t.source_lang and t.target_lang and task.spec.kind == "seq2seq" and not forced:
        lines += [
            "if hasattr(tokenizer, \"src_lang\"):  # many-to-many tokenizers (mBART-50, NLLB) mark both languages",
            f"    tokenizer.src_lang, tokenizer.tgt_lang = {_q(t.source_lang)}, {_q(t.target_lang)}",
            f"    forced = {{\"forced_bos_token_id\": tokenizer.convert_tokens_to_ids({_q(t.target_lang)})}}",
            "else:",
            "    forced = {}",
        ]
        settings.append("**forced")
    elif forced:
        settings.append(f"forced_bos_token_id=tokenizer.convert_tokens_to_ids({_q(forced)})")
    settings += ["pad_token_id=tokenizer.pad_token_id", "eos_token_id=tokenizer.eos_token_id"]
    if task.spec.kind == "seq2seq":
        return lines + [
            f"inputs = tokenizer({_q(source)}, return_tensors=\"pt\")",
            "with torch.no_grad():",
            f"    output = model.generate(**inputs, {', '.join(settings)})",
            "print(tokenizer.decode(output[0], skip_special_tokens=True).strip())",
        ]
    prompt, _ = split_template(t.template)
    return lines + [
        f"prompt = {_q(prompt)}.format(source={_q(source)})",
        "inputs = tokenizer(prompt, return_tensors=\"pt\")",
        "with torch.no_grad():",
        f"    output = model.generate(**inputs, {', '.join(settings)})",
        "print(tokenizer.decode(output[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True).strip())",
    ]


def _mean_pooled_code(task: Task, repo_id: str, labels, adapter: bool) -> str:
    from transformers import AutoModel

    from mmkit.models.pooling import HEAD_FILE

    spec = task.spec
    encoder_class = AutoModel._model_mapping.get(type(spec.config), None)
    no_pooler = encoder_class is not None and "add_pooling_layer" in inspect.signature(encoder_class.__init__).parameters
    pooler_arg = ", add_pooling_layer=False" if no_pooler else ""
    lines = [
        "import torch",
        *(["from peft import PeftModel"] if adapter else ["from safetensors.torch import load_file"]),
        "from transformers import AutoModel, AutoTokenizer",
        *([] if adapter else ["from transformers.utils import cached_file"]),
        "",
        "",
        "class MeanPooledClassifier(torch.nn.Module):",
        "    \"\"\"mmkit's head for sentence-embedding checkpoints: the mean of the token states -> a linear layer.\"\"\"",
        "",
        "    def __init__(self, encoder, num_labels):",
        "        super().__init__()",
        "        self.encoder, self.config = encoder, encoder.config",
        "        self.dropout = torch.nn.Dropout(0.1)",
        "        self.classifier = torch.nn.Linear(encoder.config.hidden_size, num_labels)",
        "",
        "    def forward(self, input_ids, attention_mask, token_type_ids=None, **ignored):",
        "        extra = {} if token_type_ids is None else {\"token_type_ids\": token_type_ids}",
        "        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state",
        "        mask = attention_mask.unsqueeze(-1).to(states.dtype)",
        "        return self.classifier(self.dropout((states * mask).sum(1) / mask.sum(1).clamp(min=1.0)))",
        "",
        "",
        f"tokenizer = AutoTokenizer.from_pretrained({_q(repo_id)})",
    ]
    if adapter:
        lines += [
            f"model = MeanPooledClassifier(AutoModel.from_pretrained({_q(spec.base_id)}{pooler_arg}), num_labels={len(labels)})",
            f"model = PeftModel.from_pretrained(model, {_q(repo_id)}).eval()",
        ]
    else:
        lines += [
            f"model = MeanPooledClassifier(AutoModel.from_pretrained({_q(repo_id)}{pooler_arg}), num_labels={len(labels)})",
            f"model.classifier.load_state_dict(load_file(cached_file({_q(repo_id)}, {_q(HEAD_FILE)})))",
            "model.eval()",
        ]
    lines += [
        "",
        f"labels = {labels!r}",
        f"inputs = tokenizer({_q(task.example_input['text'])}, return_tensors=\"pt\")",
        "with torch.no_grad():",
        "    probs = model(**inputs).softmax(-1)[0]",
        "print(labels[int(probs.argmax())], dict(zip(labels, probs.tolist())))",
    ]
    return "\n".join(lines)


def _mmkit_code(task: Task, repo_id: str) -> str:
    example = ", ".join(f"{key}={_q(value)}" for key, value in task.example_input.items())
    return "\n".join([
        "import mmkit",
        "",
        "# The head reads features no transformers class computes (the image and the text read together by the",
        f"# {task.spec.family.name} encoder), so the run loads with mmkit: the adapter on a fresh base, or its full weights.",
        f"model = mmkit.load_run({_q(repo_id)})",
        f"print(model.predict({example}))",
    ])
