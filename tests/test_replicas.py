"""The replica table (tests/replicas.py): every family builds offline, reloads with the Auto classes as the real
checkpoint would (same tokenizer / processor class), covers the toy corpus without unk, runs a forward pass, and
builds byte-identically twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from replicas import MARIAN_ZH_CODES, MBART_LANGS, NLLB_LANGS, REPLICAS, Replica, toy_corpus

import transformers

transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """family -> its replica folder, each built once for the module."""
    folders: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in folders:
            folders[family] = REPLICAS[family].build(tmp_path_factory.mktemp(family))
        return folders[family]

    return get


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _json(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _image(colour=(200, 40, 40)):
    from PIL import Image

    return Image.new("RGB", (32, 32), colour)


def _check_classes(replica: Replica, folder: Path):
    """The class names the saved files carry and the classes the Auto loaders return; gives the tokenizer (or
    None) and the processor (or None)."""
    config = transformers.AutoConfig.from_pretrained(folder)
    assert config.architectures == [replica.architecture]
    if replica.kind == "vision":
        assert _json(folder, "preprocessor_config.json")["image_processor_type"] == replica.tokenizer_class
        processor = transformers.AutoImageProcessor.from_pretrained(folder)
        # without torchvision transformers 5 gives the PIL implementation, ViTImageProcessorPil
        assert type(processor).__name__.removesuffix("Pil") == replica.tokenizer_class
        return None, processor
    if replica.kind == "vision-text" and _vlm_type(folder):
        # The generic VLM family: the processor without its video part (that needs torchvision), as mmkit loads it.
        from mmkit.config import ModelConfig
        from mmkit.models.multimodal import encoder_class

        assert _json(folder, "processor_config.json")["processor_class"] == replica.tokenizer_class
        assert _json(folder, "tokenizer_config.json")["tokenizer_class"] == replica.text_tokenizer_class
        if (folder / "video_preprocessor_config.json").is_file():
            with pytest.raises((ImportError, OSError)):  # the video processor class needs torchvision
                transformers.AutoProcessor.from_pretrained(folder)
        processor = encoder_class(_vlm_type(folder)).load_processor(ModelConfig(), str(folder))
        assert type(processor).__name__ == replica.tokenizer_class
        assert type(processor.tokenizer).__name__ == replica.expected_loaded_class
        return processor.tokenizer, processor
    if replica.kind == "vision-text":
        assert _json(folder, "processor_config.json")["processor_class"] == replica.tokenizer_class
        assert _json(folder, "tokenizer_config.json")["tokenizer_class"] == replica.text_tokenizer_class
        processor = transformers.AutoProcessor.from_pretrained(folder)
        assert type(processor).__name__ == replica.tokenizer_class
        tokenizer = processor.tokenizer
        assert type(tokenizer).__name__ == replica.expected_loaded_class
        return tokenizer, processor
    assert _json(folder, "tokenizer_config.json")["tokenizer_class"] == replica.tokenizer_class
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert type(tokenizer).__name__ == replica.expected_loaded_class
    return tokenizer, None


def _vlm_type(folder: Path) -> str | None:
    from mmkit.models.multimodal.vlm_table import ARCHITECTURES

    model_type = _json(folder, "config.json").get("model_type")
    return model_type if model_type in ARCHITECTURES else None


def _check_coverage(replica: Replica, tokenizer) -> None:
    corpus = toy_corpus()
    pieces = list(corpus.words) + list(corpus.chars)
    unk = tokenizer.unk_token_id
    sides = {"source": tokenizer(pieces, add_special_tokens=False).input_ids}
    if replica.family.startswith("marian") or replica.family == "nllb":  # nllb: one vocab, target-side specials
        sides["target"] = tokenizer(text_target=pieces, add_special_tokens=False).input_ids
    for side, ids in sides.items():
        if unk is not None:
            missing = [p for p, row in zip(pieces, ids) if unk in row]
            assert not missing, f"{replica.family} ({side}): these tokenize to unk: {missing}"
        assert all(ids), f"{replica.family} ({side}): a piece encodes to nothing"
    # every whole word is one token in WordPiece / Unigram / BPE-with-prefix vocabularies (a real piece, not
    # stitched from characters): check the words as they appear mid-sentence
    sentence = " ".join(w for w in corpus.whole if w.isascii())
    tokens = tokenizer.tokenize(sentence)
    assert len(tokens) == len(sentence.split()), f"{replica.family}: whole words split: {tokens[:40]}"


def _forward(replica: Replica, folder: Path, tokenizer, processor):
    model_cls = getattr(transformers, replica.auto_model)
    model = model_cls.from_pretrained(folder).eval()
    if tokenizer is not None:  # every id the tokenizer can produce has an embedding row
        assert max(tokenizer.get_vocab().values()) < model.config.get_text_config().vocab_size
    texts = ["the good film", "alice visited new york and met bob"]
    with torch.no_grad():
        if replica.kind == "vision":
            out = model(**processor(images=[_image()], return_tensors="pt"))
            assert out.logits.shape == (1, 1000)
        elif replica.family == "clip":
            texts = ["a photo that feels positive", "bad"]
            batch = processor(text=texts, images=[_image()], padding=True, return_tensors="pt")
            out = model(**batch)
            assert out.logits_per_image.shape == (1, 2)
        elif replica.family == "blip":  # image-text matching: the text encoder cross-attends to the image
            batch = processor(images=[_image()], text=["the good film"], return_tensors="pt")
            assert batch["input_ids"][0, 0] == tokenizer.cls_token_id and tokenizer.bos_token == "[DEC]"
            out = model(**batch)
            assert out.itm_score.shape == (1, 2) and torch.isfinite(out.itm_score).all()
        elif replica.family.startswith("blip2"):
            batch = processor(images=[_image()], text=["a photo of"], return_tensors="pt")
            image_token = model.config.image_token_index
            assert (batch["input_ids"] == image_token).sum().item() == model.config.num_query_tokens
            out = model(**batch, labels=batch["input_ids"]) if replica.family == "blip2-opt" else model(
                **batch, labels=tokenizer(["good"], return_tensors="pt").input_ids
            )
            assert torch.isfinite(out.loss)
        elif replica.family == "llava":
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "the good film"}]}]
            prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
            assert prompt == "USER: <image>\nthe good film ASSISTANT:"
            batch = processor(images=[_image()], text=[prompt], return_tensors="pt")
            assert (batch["input_ids"] == model.config.image_token_index).sum().item() == 16  # (32 / 8)^2, CLS dropped
            out = model(**batch)
            assert out.logits.shape[:2] == batch["input_ids"].shape
        elif _vlm_type(folder):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "the good film"}]}]
            prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
            expected_prompt = {  # the real chat templates: Qwen3-VL has no default system turn, Gemma 3 writes <bos>
                "qwen3-vl": "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>the good film<|im_end|>\n<|im_start|>assistant\n",
                "gemma3": "<bos><start_of_turn>user\n<start_of_image>the good film<end_of_turn>\n<start_of_turn>model\n",
            }.get(replica.family)
            assert expected_prompt in (None, prompt), prompt
            from mmkit.models.multimodal.vlm_table import ARCHITECTURES

            images = [_image(), _image().resize((56, 28))]
            if ARCHITECTURES[_vlm_type(folder)].nested_images:  # one list of images per row
                images = [[image] for image in images]
            batch = processor(images=images, text=[prompt, prompt], padding=True, return_tensors="pt")
            counts = (batch["input_ids"] == model.config.image_token_id).sum(-1).tolist()
            # dynamic resolution: Qwen2-VL one token per 28 x 28 pixels (4 and 6); SmolVLM 4 per tile (5 and 3 tiles)
            assert counts == {"qwen2-vl": [4, 6], "qwen2.5-vl": [4, 6], "smolvlm": [20, 12],
                      "llava-next": [36, 52], "qwen3-vl": [4, 6], "gemma3": [4, 4], "idefics3": [20, 12],
                      "llava-onevision": [36, 52]}[replica.family], counts  # LLaVA-NeXT/OneVision: base view + tiles + row newlines
            out = model(**batch)
            assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.logits).all()
        elif replica.kind == "seq2seq":
            sources, targets = ["the big cat sees the dog", "the bird eats"], ["die gross katze", "der vogel"]
            if replica.family == "mbart":
                tokenizer.src_lang, tokenizer.tgt_lang = "en_XX", "de_DE"
            if replica.family == "nllb":
                tokenizer.src_lang, tokenizer.tgt_lang = "eng_Latn", "deu_Latn"
            if replica.family == "marian-zh":
                sources, targets = [">>cmn_Hans<< " + s for s in sources], ["大猫", "鸟吃"]
            batch = tokenizer(sources, text_target=targets, padding=True, return_tensors="pt")
            if replica.family == "mbart":
                assert batch["input_ids"][0, 0] == tokenizer.convert_tokens_to_ids("en_XX")
                assert batch["labels"][0, 0] == tokenizer.convert_tokens_to_ids("de_DE")
            if replica.family == "marian-zh":
                assert batch["input_ids"][0, 0] == tokenizer.convert_tokens_to_ids(">>cmn_Hans<<")
            if replica.family == "nllb":  # legacy_behaviour False: [lang] tokens </s> on both sides
                source = tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
                assert source == ["eng_Latn", "▁the", "▁big", "▁cat", "▁sees", "▁the", "▁dog", "</s>"]
                target = tokenizer.convert_ids_to_tokens(batch["labels"][0])
                assert target == ["deu_Latn", "▁die", "▁gross", "▁katze", "</s>"]
            out = model(**batch)
            assert torch.isfinite(out.loss)
            if replica.family == "nllb":  # decoding starts at </s>, the language is forced as the first token
                german = tokenizer.convert_tokens_to_ids("deu_Latn")
                generated = model.generate(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], forced_bos_token_id=german,
                    max_new_tokens=3,
                )
                assert generated[:, 0].tolist() == [2, 2] and generated[:, 1].tolist() == [german, german]
        else:
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token  # what mmkit does for decoders without a pad token
            batch = tokenizer(texts, padding=True, return_tensors="pt")
            out = model(**batch)
            first = out.logits if hasattr(out, "logits") else out.last_hidden_state
            assert first.shape[:2] == batch["input_ids"].shape and torch.isfinite(first).all()
    return model


@pytest.mark.parametrize("family", list(REPLICAS))
def test_replica(family, built, tmp_path):
    replica = REPLICAS[family]
    first = built(family)
    second = replica.build(tmp_path / "again")
    files = _files(first)
    assert {"config.json", "model.safetensors"} <= set(files)
    assert files == _files(second), "two builds differ: " + ", ".join(
        n for n in files.keys() | _files(second).keys() if files.get(n) != _files(second).get(n)
    )

    tokenizer, processor = _check_classes(replica, first)
    if tokenizer is not None:
        _check_coverage(replica, tokenizer)
    _forward(replica, first, tokenizer, processor)


def test_task_heads_start_new(built):
    """Loading a task head on a replica initialises only the head (and, where the checkpoint has none, the
    pooler): the body loads. ViT's shipped ImageNet head must be replaced explicitly, as with the real one."""
    for family, replica in REPLICAS.items():
        if replica.kind != "text":
            continue
        model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
            built(family), num_labels=3, output_loading_info=True
        )
        missing = info["missing_keys"]
        assert missing, f"{family}: the classification head was not newly initialised"
        body = [k for k in missing if not any(part in k for part in ("classifier", "score", "pooler"))]
        assert not body, f"{family}: body weights not loaded: {body}"
        if family == "bert":
            assert not any("pooler" in k for k in missing)  # bert-base-uncased ships its pooler
    vit = built("vit")
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        transformers.AutoModelForImageClassification.from_pretrained(vit, num_labels=2)
    model, info = transformers.AutoModelForImageClassification.from_pretrained(
        vit, num_labels=2, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert {key for key, *_ in info["mismatched_keys"]} == {"classifier.weight", "classifier.bias"}


def test_special_token_conventions(built):
    """Spot checks of the real checkpoints' conventions: decoders without pad keep none; pad / bos layouts."""
    expect = {  # family: (bos, eos, pad, unk), None where the real checkpoint has none
        "gpt2": ("<|endoftext|>", "<|endoftext|>", None, "<|endoftext|>"),
        "llama": ("<s>", "</s>", None, "<unk>"),
        "mistral": ("<s>", "</s>", None, "<unk>"),
        "qwen2": (None, "<|endoftext|>", "<|endoftext|>", None),
        "qwen3": (None, "<|im_end|>", "<|endoftext|>", None),
        "gemma": ("<bos>", "<eos>", "<pad>", "<unk>"),
        "phi3": ("<s>", "<|endoftext|>", "<|endoftext|>", "<unk>"),
        "t5": (None, "</s>", "<pad>", "<unk>"),
        "marian": (None, "</s>", "<pad>", "<unk>"),
        "nllb": ("<s>", "</s>", "<pad>", "<unk>"),
        "idefics3": ("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", None),
        "llava-onevision": (None, "<|im_end|>", "<|endoftext|>", None),
    }
    for family, tokens in expect.items():
        tokenizer = transformers.AutoTokenizer.from_pretrained(built(family))
        assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token) == tokens, family
        if family in ("llama", "mistral", "gemma"):
            assert tokenizer("good").input_ids[0] == tokenizer.bos_token_id, family
        if family == "marian":
            assert tokenizer.pad_token_id == len(tokenizer) - 1  # <pad> is the last id, the decoder start
    mbart = transformers.AutoTokenizer.from_pretrained(built("mbart"))
    for code in MBART_LANGS:
        assert mbart.convert_tokens_to_ids(code) != mbart.unk_token_id
    _check_nllb(built("nllb"))
    marian_zh = transformers.AutoTokenizer.from_pretrained(built("marian-zh"))
    assert set(MARIAN_ZH_CODES) <= set(marian_zh.supported_language_codes)


def _check_nllb(folder: Path) -> None:
    """nllb-200-distilled-600M: fairseq ids, the 202 FLORES-200 codes after the pieces, <mask> last, 2 spare model
    rows; no language set means eng_Latn on both sides; legacy_behaviour=True gives the old suffix layout."""
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

    nllb = transformers.AutoTokenizer.from_pretrained(folder)
    assert nllb.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>"]) == [0, 1, 2, 3]
    codes = nllb.convert_tokens_to_ids(FAIRSEQ_LANGUAGE_CODES)
    assert codes == list(range(codes[0], codes[0] + len(codes))) and nllb.unk_token_id not in codes
    assert set(NLLB_LANGS) <= set(FAIRSEQ_LANGUAGE_CODES)
    assert nllb.mask_token == "<mask>" and nllb.mask_token_id == codes[-1] + 1 == len(nllb) - 1
    assert transformers.AutoConfig.from_pretrained(folder).vocab_size == len(nllb) + 2  # 256206 for 256204
    english = nllb.convert_tokens_to_ids("eng_Latn")
    both = nllb("the cat", text_target="die katze")
    assert both.input_ids[0] == both["labels"][0] == english and both.input_ids[-1] == nllb.eos_token_id
    assert nllb.decode(both["labels"], skip_special_tokens=True) == "die katze"
    assert nllb.tokenize("ｔｈｅ  cat") == ["▁the", "▁cat"]  # nmt_nfkc, runs of spaces collapsed
    legacy = transformers.AutoTokenizer.from_pretrained(folder, legacy_behaviour=True, src_lang="deu_Latn")
    ids = legacy("die katze").input_ids
    assert ids[-2:] == [legacy.eos_token_id, legacy.convert_tokens_to_ids("deu_Latn")] and ids[0] != english


def test_bytes_do_not_depend_on_the_cpu_kernels(built, tmp_path):
    """torch's seeded init differs in the last bits between CPU kernels (AVX2 / AVX-512 / default); replicas
    re-draw their weights from integers, so a build forced onto the plain kernels gives the same bytes."""
    import os
    import subprocess
    import sys

    families = ["blip2-opt"]  # vision tower, Q-Former, OPT: most kinds of init in one build
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; import replicas\n"
        "for name in sys.argv[3:]: replicas.build_replica(name, Path(sys.argv[2]) / name)\n"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "HF_HUB_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path), *families], env=env, check=True,
        capture_output=True, timeout=300,
    )
    for family in families:
        assert _files(tmp_path / family) == _files(built(family)), family
