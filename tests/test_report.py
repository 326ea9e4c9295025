"""report.html and `mmkit compare`: the worst rows come from the evaluation outputs, the page is self-contained
(no external URL, no script, row text escaped), it renders in a headless Chromium, and compare prints the
config keys that differ."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from conftest import run_cli, sentiment_overrides

from mmkit.config import load_config
from mmkit.data import load_split
from mmkit.runs.report import render_report
from mmkit.tasks import EvalResult, build_task
from mmkit.training.finetune import finetune

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = '<script>document.title="pwned"</script><img src="https://evil.example/x.png" onerror="alert(1)"> & more'


class _Page(HTMLParser):
    """Every tag with its attributes, and the text of <title> and of <style>."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.title, self.style, self._in = "", "", None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in == "style":
            self.style += data


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def assert_self_contained(html: str, text_holds_urls: bool = False) -> _Page:
    """No element, attribute or style that loads or runs anything; with `text_holds_urls=False` no URL at all."""
    page = parse(html)
    names = {tag for tag, _ in page.tags}
    assert not names & {"script", "link", "iframe", "object", "embed"}, names
    for tag, attrs in page.tags:
        for key in ("src", "href", "srcset", "action"):
            value = (attrs.get(key) or "").strip()
            assert not value or value.startswith("data:image/") or value.startswith("#"), (tag, key, value[:80])
        assert not any(key.startswith("on") for key in attrs), (tag, attrs)
    assert "@import" not in page.style and "url(" not in page.style
    if not text_holds_urls:
        assert "http://" not in html and "https://" not in html, "no external URL anywhere in the page"
    return page


def png_pixels(path: Path) -> tuple[int, int, list[int]]:
    """Width, height and grey levels of a PNG."""
    from PIL import Image

    with Image.open(path) as image:
        grey = image.convert("L")
        return grey.width, grey.height, list(grey.getdata())


@pytest.fixture(scope="module")
def run(tiny_bert, toy_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report-run") / "run"
    finetune(load_config(None, sentiment_overrides(tiny_bert, toy_data, out, **{"train.epochs": 1, "data.max_train_rows": 96})))
    return out


# --- the worst rows, from gathered outputs --------------------------------------------------------------------

def test_classification_worst_rows_are_the_misclassified_lowest_gold_probability_first(tiny_bert, tmp_path):
    cfg = load_config(None, {"task": "sentiment", "model.name_or_path": str(tiny_bert)})
    task = build_task(cfg)
    prob = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55], [0.3, 0.7]])
    outputs = {"prob": prob, "pred": prob.argmax(-1), "label": torch.tensor([0, 0, 1, 0, 1]), "row_index": torch.tensor([10, 11, 12, 13, 14])}
    worst = task.worst_rows(outputs, ["neg", "pos"], n=2)
    assert [w["row_index"] for w in worst] == [11, 12]  # row 13 is wrong too, but less sure; rows 10, 14 are right
    assert worst[0] == {"row_index": 11, "gold": "neg", "predicted": "pos", "p_predicted": pytest.approx(0.8), "p_gold": pytest.approx(0.2)}


def test_ner_worst_rows_name_missed_and_spurious_spans_across_windows(tiny_bert):
    cfg = load_config(None, {"task": "ner", "model.name_or_path": str(tiny_bert)})
    task = build_task(cfg)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    # Row 0 comes in two windows (words 0-1, then 2-3): the prediction is merged before spans are compared.
    ig = -100
    outputs = {
        "row_index": torch.tensor([0, 0, 1, 2]),
        "gold_words": torch.tensor([[1, 2, 0, 3], [1, 2, 0, 3], [0, 3, ig, ig], [1, 0, ig, ig]]),
        "pred_words": torch.tensor([[1, 2, ig, ig], [ig, ig, 0, 0], [0, 3, ig, ig], [0, 0, ig, ig]]),
    }
    worst = task.worst_rows(outputs, labels, n=5)
    assert worst == [
        {"row_index": 0, "missed": [["LOC", 3, 3]], "spurious": [], "gold_spans": 2},
        {"row_index": 2, "missed": [["PER", 0, 0]], "spurious": [], "gold_spans": 1},
    ]
    outputs["pred_words"][3] = torch.tensor([3, 0, ig, ig])  # row 2 now also predicts a LOC that is not there
    assert task.worst_rows(outputs, labels, n=1)[0]["row_index"] == 2


def test_translation_worst_rows_have_the_lowest_sentence_chrf(tiny_gpt2):
    from sacrebleu.metrics import CHRF

    task = build_task(load_config(None, {"task": "translation", "model.name_or_path": str(tiny_gpt2)}))
    refs = ["a dog runs in the park", "two men play chess", "the sky is blue"]
    hyps = ["a dog runs in the park", "a cat sleeps", "the sky is very blue"]
    outputs = {"row_index": torch.tensor([0, 1, 2]), "source": ["s0", "s1", "s2"], "reference": refs, "hypothesis": hyps}
    worst = task.worst_rows(outputs, None, n=2)
    assert [w["row_index"] for w in worst] == [1, 2]
    assert worst[0]["chrf"] == pytest.approx(CHRF().sentence_score(hyps[1], [refs[1]]).score)


# --- the page ---------------------------------------------------------------------------------------------------

def test_row_text_is_escaped_and_the_page_fetches_nothing(run, tmp_path):
    cfg = load_config(run / "config.yaml")
    task = build_task(cfg)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "fine", "label": "positive"}) + "\n" + json.dumps({"text": HOSTILE, "label": "negative"}) + "\n")
    split = task.load_data({"test": load_split(str(rows), "test")}, labels=["negative", "positive"]).splits["test"]
    result = EvalResult(
        metrics={"accuracy": 0.5, "negative/precision": 0.0, "negative/recall": 0.0, "negative/f1": 0.0, "negative/support": 1.0},
        details={"confusion_matrix": [[0, 1], [0, 1]], "labels": ["negative", "positive"],
                 "worst_rows": [{"row_index": 1, "gold": "negative", "predicted": "positive", "p_predicted": 0.9, "p_gold": 0.1}]},
    )
    html = render_report(task, cfg, title="<b>run</b>", split_name="test", result=result, split=split, history=[])
    page = assert_self_contained(html, text_holds_urls=True)  # the hostile row's URL, as escaped text
    assert page.title == "mmkit report: <b>run</b>"  # shown as text, not markup
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in html and "&amp; more" in html
    assert f"{rows} line 2" in html, "the worst row names its file and line"


def test_a_run_writes_a_report_with_its_worst_rows(run):
    html = (run / "report.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    metrics = json.loads((run / "metrics.json").read_text())
    test_rows = [json.loads(line) for line in Path(load_config(run / "config.yaml").data.test).read_text().splitlines()]
    wrong = round((1 - metrics["accuracy"]) * metrics["num_examples"])
    cells = _worst_table(html)
    assert len(cells) == min(20, wrong), (len(cells), wrong)
    p_gold = [float(row[-1]) for row in cells]
    assert p_gold == sorted(p_gold) and all(p <= 0.5 for p in p_gold)  # binary: a wrong row gives gold at most 0.5
    for row in cells:  # the row's own text, its gold label from the file, a different prediction
        line = int(row[0].rsplit(" line ", 1)[1])
        assert row[1] == test_rows[line - 1]["text"] and row[2] == test_rows[line - 1]["label"] and row[3] != row[2]
    assert html.count('src="data:image/png;base64,') == 3, "loss curve, confusion matrix, per-class figure"


def _worst_table(html: str) -> list[list[str]]:
    """The text of each cell of the worst-rows table."""
    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.inside, self.rows, self.cell = False, [], None

        def handle_starttag(self, tag, attrs):
            if tag == "section" and dict(attrs).get("id") == "worst-rows":
                self.inside = True
            elif self.inside and tag == "tr":
                self.rows.append([])
            elif self.inside and tag == "td":
                self.cell = ""

        def handle_endtag(self, tag):
            if tag == "section":
                self.inside = False
            elif self.inside and tag == "td":
                self.rows[-1].append(self.cell)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Cells()
    parser.feed(html)
    return [row for row in parser.rows if row]  # the header row has th cells only


def test_eval_writes_a_report_next_to_its_metrics(run, tmp_path):
    from mmkit.runs.inference import evaluate_run, load_trained

    evaluate_run(load_trained(str(run)), None, "test", tmp_path / "eval")
    html = (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    assert "evaluated on test" in html and len(_worst_table(html)) == len(_worst_table((run / "report.html").read_text()))
    assert "loss and validation metric" in html, "the run's train log gives the eval report its curves"


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium to render report.html in a real browser (Debian: apt-get install chromium)")
def test_the_report_renders_in_headless_chromium(run, tmp_path):
    shot = tmp_path / "report.png"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    url = (run / "report.html").resolve().as_uri()
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,1600", url], capture_output=True, timeout=120, check=True)
    width, height, grey = png_pixels(shot)
    assert (width, height) == (1280, 1600)
    mean = sum(grey) / len(grey)
    variance = sum((g - mean) ** 2 for g in grey) / len(grey)
    dark = sum(g < 100 for g in grey) / len(grey)  # the header band, text, plots
    assert variance > 500 and 0.03 < dark < 0.6, (variance, dark)
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "<title>mmkit report: run</title>" in dom and 'id="worst-rows"' in dom


# --- mmkit compare ----------------------------------------------------------------------------------------------

def _variant(run: Path, folder: Path, r: int, accuracy: float) -> Path:
    """The run's recorded files with lora.r and the accuracy changed: what compare reads of a second run."""
    import yaml

    folder.mkdir(parents=True)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["lora"]["r"] = r
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {**json.loads((run / "metrics.json").read_text()), "accuracy": accuracy}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    (folder / "train_log.jsonl").write_text("".join(json.dumps({**rec, "loss": rec["loss"] / 2}) + "\n" for rec in log if "loss" in rec))
    return folder


def test_compare_prints_the_differing_keys_and_writes_png_and_html(run, tmp_path):
    other = _variant(run, tmp_path / "r16", r=16, accuracy=0.25)
    proc = run_cli("compare", str(run), str(other), "--output", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["config", "key", "run", "r16"]
    assert [line.split() for line in lines if line.startswith("lora.r ")] == [["lora.r", "8", "16"]]
    assert not any(line.startswith(("train.output_dir", "lora.alpha")) for line in lines), "only keys that differ"
    accuracy = json.loads((run / "metrics.json").read_text())["accuracy"]
    assert [line.split() for line in lines if line.startswith("accuracy ")] == [["accuracy", f"{accuracy:.4f}", "0.2500"]]
    width, height, grey = png_pixels(tmp_path / "cmp" / "compare.png")
    assert width > 300 and height > 200 and len(set(grey)) > 10
    html = (tmp_path / "cmp" / "compare.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    assert "lora.r" in html and 'src="data:image/png;base64,' in html


def test_compare_refuses_what_is_not_a_run_before_writing(run, tmp_path, capsys):
    from mmkit.cli import main

    def refused(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["compare", *argv, "--output", str(tmp_path / "cmp")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "cmp").exists(), "nothing written"
        return err

    (tmp_path / "notes").mkdir()
    assert "is not an mmkit run (no config.yaml)" in refused(str(run), str(tmp_path / "notes"))
    assert "is not an mmkit run (no such folder)" in refused(str(run), str(tmp_path / "missing"))
    assert "needs at least two runs" in refused(str(run))
    broken = _variant(run, tmp_path / "broken", r=4, accuracy=0.5)
    (broken / "train_log.jsonl").write_text('{"kind": "train", "step": 1\n')
    assert "train_log.jsonl line 1 is not JSON" in refused(str(run), str(broken))
    (broken / "metrics.json").write_text("[1, 2]")
    assert "metrics.json is not a JSON object" in refused(str(run), str(broken))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        main(["compare", str(run), str(run), "--output", str(tmp_path / "file" / "cmp")])
    assert "is inside" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    help_text = capsys.readouterr().out
    assert "examples:" in help_text and "compare.html" in help_text and "--output" in help_text


def test_image_rows_get_an_inline_thumbnail(tmp_path):
    import base64
    import io

    from PIL import Image

    from mmkit.runs.report import THUMBNAIL_SIDE, thumbnail

    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (640, 320), (200, 40, 40)).save(photo)
    uri = thumbnail(str(photo))
    assert uri.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as small:
        assert max(small.size) <= THUMBNAIL_SIDE and small.size[0] == 2 * small.size[1]  # shrunk, shape kept
    (tmp_path / "gone.jpg").write_bytes(b"not a jpeg")
    assert thumbnail(str(tmp_path / "gone.jpg")) is None  # changed since the run: the row says so, the report is still written
