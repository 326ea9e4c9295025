"""NER: CoNLL reading, schemes, word -> sub-token alignment and windows, seqeval metrics by hand, a tiny
model learning a toy tagging task, reload to identical logits, predict with character offsets, bad input."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from builders import build_tiny_bert, build_tiny_gpt2, write_jsonl
from builders_ner import CHINESE, NER_WORDS, toy_chinese_rows, toy_ner_rows, toy_ner_splits
from conftest import run_cli

from mmkit.cli import main
from mmkit.config import load_config
from mmkit.data import load_split
from mmkit.training.finetune import finetune
from mmkit.runs.inference import load_trained, predict
from mmkit.data.ner import IGNORE, continuation_tags, labels_for_window, scheme_of, scheme_violations, sort_tag_names, windows_for_words
from mmkit.tasks import build_task
from mmkit.tasks.ner import NerTask

TAGS = ["O", "B-LOC", "I-LOC", "B-PER"]


@pytest.fixture(scope="module")
def ner_bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("ner-bert"), extra_words=NER_WORDS + CHINESE)


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory):
    return toy_ner_splits(tmp_path_factory.mktemp("ner-data"))


def ner_overrides(model, data, out, **extra):
    overrides = {
        "task": "ner", "model.name_or_path": str(model), "data.train": str(data["train"]),
        "data.validation": str(data["validation"]), "data.test": str(data["test"]), "train.output_dir": str(out),
        "train.batch_size": 16, "train.epochs": 12, "train.learning_rate": 1e-2, "lora.dropout": 0.0, "train.log_every": 5,
    }
    overrides.update(extra)
    return overrides


# --- CoNLL files and schemes ---------------------------------------------------------------------------------
def test_conll_reader_handles_docstart_and_blank_lines(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\nPeter NNP B-NP B-PER\n"
        "Blackburn NNP I-NP I-PER\n\n-DOCSTART- -X- O O\n\nBRUSSELS\tB-LOC\n"
    )
    split = load_split(str(path), "train")
    assert split.dataset["tokens"] == [["EU", "rejects"], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert split.dataset["ner_tags"] == [["B-ORG", "O"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert [split.where(i) for i in range(3)] == [f"{path} line {n}" for n in (3, 7, 12)]


def test_schemes_and_violations():
    assert scheme_of(["O", "B-PER", "I-PER"]) == "BIO"
    assert scheme_of(["O", "B-PER", "I-PER", "E-PER", "S-PER"]) == "BIOES"
    assert scheme_violations(["O", "I-PER", "I-PER", "B-LOC", "I-PER", "B-ORG", "I-ORG"]) == 2
    assert scheme_violations(["S-PER", "E-LOC", "B-LOC", "E-LOC"], "BIOES") == 1
    assert sort_tag_names({"I-PER", "B-LOC", "O", "B-PER", "I-LOC"}) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


# --- alignment and windows -------------------------------------------------------------------------------------
def test_first_subtoken_carries_the_tag(ner_bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ner_bert)
    words = ["alice", "visited", "zoltanova", "in", "paris"]  # zoltanova is not in the vocab: many pieces
    tags = [3, 0, 3, 0, 1]
    (window,) = windows_for_words(tok, words, 64, 8)
    pieces = tok.convert_ids_to_tokens(window.input_ids)
    z = len(tok.tokenize("zoltanova"))
    assert z > 1
    assert pieces[:3] == ["[CLS]", "alice", "visited"] and pieces[-1] == "[SEP]"
    expected = [IGNORE, 3, 0, 3] + [IGNORE] * (z - 1) + [0, 1, IGNORE]
    assert labels_for_window(window, tags) == expected


def test_label_all_subtokens_gives_later_pieces_the_inside_tag(ner_bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ner_bert)
    names = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert continuation_tags(names) == [0, 2, 2, 4, 4]
    words = ["alice", "visited", "zoltanova", "in", "paris"]
    (window,) = windows_for_words(tok, words, 64, 8)
    z = len(tok.tokenize("zoltanova"))
    # B-PER's later pieces are I-PER (a B on each would read as z one-piece entities); the first keeps B-PER.
    expected = [IGNORE, 3, 0, 3] + [4] * (z - 1) + [0, 1, IGNORE]
    assert labels_for_window(window, [3, 0, 3, 0, 1], continuation_tags(names)) == expected
    # Across windows only the window that owns a word labels its pieces: never more pieces than the word has
    # (pieces cut off into the next window stay unlabelled), never none.
    words = ["the", "zoltanova", "film", "was", "very", "alice", "and", "paris", "met", "rome"]
    windows = windows_for_words(tok, words, max_length=8, stride=2)
    identity = list(range(len(words)))
    labelled = Counter(t for w in windows for t in labels_for_window(w, identity, identity) if t != IGNORE)
    assert all(1 <= labelled[i] <= len(tok.tokenize(word)) for i, word in enumerate(words))
    assert sum(labelled.values()) > len(words)


def test_long_sentences_become_windows_that_own_each_word_once(ner_bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ner_bert)
    words = ["the", "zoltanova", "film", "was", "very", "alice", "and", "paris", "met", "rome"]
    tags = list(range(len(words)))  # tag = word index, to see exactly which word each label is
    windows = windows_for_words(tok, words, max_length=8, stride=2)  # 6 content tokens per window, 2 shared
    assert len(windows) > 1 and all(len(w.input_ids) <= 8 for w in windows)
    labelled = [t for w in windows for t in labels_for_window(w, tags) if t != IGNORE]
    assert sorted(labelled) == tags  # every word labelled exactly once across the windows
    # Hand check of the first window: [CLS] the z ##o ##l ... ; only "the" and "zoltanova" start here.
    first = labels_for_window(windows[0], tags)
    assert first[0] == IGNORE and first[1] == 0 and first[2] == 1 and set(first[3:]) == {IGNORE}
    # A word cut at a window edge is owned by the window where it has context on both sides.
    for window in windows:
        content = [i for i, wid in enumerate(window.word_ids) if wid is not None]
        owned = [i for i, own in enumerate(window.owned) if own]
        if len(windows) > 1 and window is not windows[0] and owned:
            assert owned[0] > content[0] or window.word_ids[content[0]] not in {w for x in windows[:1] for w in x.word_ids}


def test_gpt2_words_get_a_prefix_space(tmp_path):
    gpt2 = build_tiny_gpt2(tmp_path / "gpt2")
    tok = build_task(load_config(None, {"task": "ner", "model.name_or_path": str(gpt2)})).load_processor()
    (window,) = windows_for_words(tok, ["good", "film"], 32, 4)
    assert tok.convert_ids_to_tokens(window.input_ids)[0].startswith("Ġ")


# --- metrics -----------------------------------------------------------------------------------------------------
def test_seqeval_figures_equal_a_hand_computation():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    ids = {t: i for i, t in enumerate(labels)}
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "O", "O", "O", "B-PER"]]
    # gold entities: PER(0-1), LOC(3) | LOC(0-1), PER(4) = 4; predicted: PER(0-1) | LOC(0), PER(4) = 3
    # correct: PER(0-1), PER(4) = 2 -> precision 2/3, recall 2/4; PER p=r=1; LOC p=0/1, r=0/2
    width = 5
    pad = lambda seqs: [[ids[t] for t in s] + [IGNORE] * (width - len(s)) for s in seqs]  # noqa: E731
    # Sentence 1 arrives in two windows: the second carries only word 4's prediction.
    outputs = {
        "row_index": torch.tensor([0, 1, 1]),
        "gold_words": torch.tensor(pad(gold) + pad(gold[1:])),
        "pred_words": torch.tensor(pad(pred) [:1] + [[ids["B-LOC"], ids["O"], ids["O"], ids["O"], IGNORE]] + [[IGNORE] * 4 + [ids["B-PER"]]]),
    }
    m = NerTask(load_config(None, {"task": "ner"}), None).compute_metrics(outputs, labels).metrics
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    assert m["PER/f1"] == 1.0 and m["LOC/recall"] == 0.0 and m["LOC/support"] == 2
    assert m["accuracy"] == pytest.approx(7 / 9)  # token accuracy over the 9 words


# --- training end to end -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ner_run(ner_bert, ner_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ner-run") / "run"
    metrics = finetune(load_config(None, ner_overrides(ner_bert, ner_data, out)))
    return out, metrics


def test_tiny_bert_learns_toy_tagging(ner_run):
    run, metrics = ner_run
    assert metrics["f1"] >= 0.95, metrics
    losses = [json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines() if '"train"' in line]
    assert losses[-1] < 0.3 * losses[0]
    assert json.loads((run / "labels.json").read_text()) == TAGS


def test_ner_adapter_reloads_to_identical_logits(ner_run, ner_bert):
    from safetensors.torch import load_file

    from mmkit.models.lora import load_trainable_state_dict

    run, _ = ner_run
    trained = load_trained(str(run))
    reference = trained.task.spec.build(TAGS, trained.processor).eval()
    load_trainable_state_dict(reference, load_file(str(run / "checkpoints" / "best" / "trainable.safetensors")))
    batch = trained.processor([["alice", "visited", "new", "york"], ["the", "oslo"]], is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(trained.model(**batch).logits, reference(**batch).logits)


def test_predict_gives_spans_with_character_offsets(ner_run):
    run, _ = ner_run
    proc = run_cli("predict", str(run), "Alice visited New York and met Bob in Rome", "--json")
    assert proc.returncode == 0, proc.stderr
    entities = json.loads(proc.stdout.strip().splitlines()[-1])["entities"]
    found = {(e["text"], e["type"], e["start"], e["end"]) for e in entities}
    assert found == {("Alice", "PER", 0, 5), ("New York", "LOC", 14, 22), ("Bob", "PER", 31, 34), ("Rome", "LOC", 38, 42)}


def test_eval_command_equals_training_metrics(ner_run, tmp_path):
    run, metrics = ner_run
    proc = run_cli("eval", str(run), "--output", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["f1"] == metrics["f1"] and evaluated["precision"] == metrics["precision"]
    assert "entity precision" in proc.stdout


def test_windows_at_training_time_reassemble(ner_bert, ner_data, tmp_path):
    """max_length 8 cuts most sentences into windows: metrics still count every sentence once."""
    metrics = finetune(load_config(None, ner_overrides(ner_bert, ner_data, tmp_path / "run", **{"data.max_length": 8, "ner.stride": 2, "train.epochs": 1})))
    assert metrics["sentences"] == 80 and metrics["num_examples"] == 80


def test_chinese_character_level_and_predict(tmp_path, ner_bert):
    data = {s: write_jsonl(tmp_path / f"{s}.jsonl", toy_chinese_rows(n, seed)) for s, n, seed in (("train", 300, 1), ("validation", 60, 2), ("test", 60, 3))}
    out = tmp_path / "run"
    metrics = finetune(load_config(None, ner_overrides(ner_bert, data, out, **{"train.epochs": 10})))
    assert metrics["f1"] >= 0.9, metrics
    result = predict(load_trained(str(out)), {"text": "今天张伟见到我们北京在"})
    assert {(e["text"], e["type"], e["start"], e["end"]) for e in result["entities"]} == {("张伟", "PER", 2, 4), ("北京", "LOC", 8, 10)}


def test_tiny_gpt2_token_classification_learns(tmp_path, ner_data):
    from builders_ner import FILLER, PEOPLE, PLACES

    corpus = [" ".join(PEOPLE + PLACES + FILLER + ["new", "york", "san", "jose", "visited", "met", "in"])] * 8
    gpt2 = build_tiny_gpt2(tmp_path / "gpt2", corpus=corpus)
    metrics = finetune(load_config(None, ner_overrides(gpt2, ner_data, tmp_path / "run")))
    # A left-to-right model cannot see the next word, so "new" (B-LOC) before "york" is guessable only
    # from the word itself; the other tags are learnt.
    assert metrics["f1"] >= 0.85, metrics


# --- bad input -------------------------------------------------------------------------------------------------
def _cli_train(ner_bert, train, valid, out, tmp_path, *extra):
    config = tmp_path / "c.yaml"
    config.write_text("task: ner\n")
    return [str(config), f"model.name_or_path={ner_bert}", f"data.train={train}", f"data.validation={valid}", f"train.output_dir={out}", "train.epochs=1", *extra]


GOOD = toy_ner_rows(6, 9)


@pytest.mark.parametrize(
    "bad_row, expected",
    [
        ({"tokens": ["alice", "visited"], "ner_tags": ["B-PER"]}, ["line 4", "2 tokens but 1 tags"]),
        ({"tokens": [], "ner_tags": []}, ["line 4", "empty sentence"]),
        ({"tokens": ["alice"], "ner_tags": [3]}, ["line 4", "mixes tag names and integers"]),
    ],
)
def test_bad_training_rows(bad_row, expected, ner_bert, tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", GOOD[:3] + [bad_row] + GOOD[3:])
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *_cli_train(ner_bert, train, train, out, tmp_path)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: ") and "train.jsonl" in message
    for fragment in expected:
        assert fragment in message, message
    assert not out.exists()


def test_unknown_tag_in_eval_data(ner_bert, tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", GOOD)
    valid = write_jsonl(tmp_path / "valid.jsonl", GOOD[:2] + [{"tokens": ["acme"], "ner_tags": ["B-ORG"]}])
    with pytest.raises(SystemExit):
        main(["train", *_cli_train(ner_bert, train, valid, tmp_path / "run", tmp_path)])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "valid.jsonl line 3" in message and "unknown tag 'B-ORG'" in message


def test_skip_mode_counts_bad_rows(ner_bert, tmp_path):
    rows = GOOD[:3] + [{"tokens": ["alice", "met"], "ner_tags": ["B-PER"]}, {"tokens": [], "ner_tags": []}] + GOOD[3:]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    proc = run_cli("train", *_cli_train(ner_bert, train, write_jsonl(tmp_path / "v.jsonl", GOOD), tmp_path / "run", tmp_path, "data.on_bad_row=skip"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped 2 bad rows" in proc.stdout + proc.stderr
