"""The `mmkit` command: train, eval, predict, compare.

Imports of torch/transformers happen inside the commands, so `mmkit --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys

from mmkit.errors import UserError, exit_on_user_error

EPILOG_TRAIN = """\
examples:
  mmkit train recipes/configs/sentiment_minilm.yaml
  mmkit train recipes/configs/sentiment_minilm.yaml train.epochs=1 lora.r=16 train.output_dir=runs/try2
  mmkit train recipes/configs/sentiment_minilm.yaml train.resume=true      # continue an interrupted run
  accelerate launch recipes/sentiment.py --config recipes/configs/sentiment_minilm.yaml   # same code

Any config key can be overridden as key=value (YAML syntax for the value: lora.target_modules=[query,value]).
Keys and their defaults:
"""


def _train_epilog() -> str:
    from mmkit.config import describe_keys

    return EPILOG_TRAIN + describe_keys()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmkit",
        description="Fine-tune pretrained models with LoRA for NER, sentiment, translation and image+text "
        "sentiment; evaluate and use the results.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `mmkit COMMAND --help` for the options and examples of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="fine-tune from a YAML config",
        description="Fine-tune a model from a YAML config: train, keep the best checkpoint, save the adapter "
        "with its head and tokenizer, evaluate on the test split.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_train_epilog(),
    )
    train.add_argument("config", help="YAML config file (see recipes/configs/)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=1")

    ev = sub.add_parser(
        "eval",
        help="evaluate a run or Hub adapter on a dataset",
        description="Evaluate a trained run (its folder, or a Hub repo id) and write metrics.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  mmkit eval runs/sentiment-all-MiniLM-L6-v2 --data my_test.jsonl\n"
        "  mmkit eval runs/sentiment-all-MiniLM-L6-v2 --split validation --output eval_val/\n"
        "  mmkit eval --zero-shot openai/clip-vit-base-patch32 --data mvsa/test.jsonl --labels negative,neutral,positive\n"
        "  mmkit eval --zero-shot openai/clip-vit-base-patch32 --data photos/ --image-only     # photos/<label>/*.jpg\n"
        "  mmkit eval --zero-shot openai/clip-vit-base-patch32 --data photos/ --image-only \\\n"
        "      --prompt 'a photo of a {label}.' --prompt 'a blurry photo of a {label}.'    # or --prompts FILE\n\n"
        "--zero-shot scores each row's image (and text) against prompts per label with a CLIP checkpoint, no\n"
        "training: the baseline a fine-tuned run should beat, in the same metrics.json. Image+text rows are scored\n"
        "with the image and text averaged; --image-only scores the image alone and also reads image-only data (an\n"
        "image folder root/<label>/*, or rows with image and label). Several templates form an ensemble (CLIP\n"
        "paper): each label's template embeddings are normalised, averaged and normalised again. Default\n"
        "templates: 'a photo that feels {label}' for image+text rows, a set of CLIP's ImageNet templates\n"
        "('a photo of a {label}.', 'a bad photo of a {label}.', ...) for image-only data.",
    )
    ev.add_argument("run", help="run directory, or Hub repo (owner/name, or hf://owner/name when a local folder has the owner's name); with --zero-shot: a CLIP checkpoint")
    ev.add_argument("--data", help="file or Hub dataset id to evaluate on (default: the run's own data.<split>)")
    ev.add_argument("--split", default="test", help="split name: which data.<split> to use, or the Hub split (default: test)")
    ev.add_argument("--output", help="folder for metrics.json and plots (default: RUN/eval)")
    ev.add_argument("--batch-size", type=int, help="rows per batch (default: the run's eval batch size)")
    ev.add_argument("--revision", help="Hub branch, tag or commit (Hub repo ids only; with --zero-shot: of the CLIP checkpoint)")
    ev.add_argument("--base", help="load the base model from here (must be the adapter's base model; not with --zero-shot)")
    ev.add_argument("--trust-remote-code", action="store_true", help="run Python code shipped with the checkpoint (auto_map); never switched on by a run folder's own config")
    zs = ev.add_argument_group("zero-shot (CLIP, no training)")
    zs.add_argument("--zero-shot", action="store_true", help="score rows against label prompts with the CLIP checkpoint RUN")
    zs.add_argument("--labels", help="comma-separated label names, in class-id order (needed when the data holds ids 0..K-1)")
    zs.add_argument(
        "--prompt", action="append", metavar="TEMPLATE",
        help="a prompt template with {label}; give it several times for an ensemble (default: see below)",
    )
    zs.add_argument("--prompts", metavar="FILE", help="a file of prompt templates, one per line (# comments), each with {label}")
    zs.add_argument(
        "--image-only", action="store_true",
        help="score the image alone (default: image and text averaged); needed for image folders and image-only rows",
    )

    pr = sub.add_parser(
        "predict",
        help="predict for one input",
        description="Load a trained run (folder or Hub repo id) and predict for one input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n  mmkit predict runs/sentiment-all-MiniLM-L6-v2 "a warm, funny film"\n'
        '  mmkit predict runs/sentiment-all-MiniLM-L6-v2 "dull" --json\n'
        '  mmkit predict runs/mm_sentiment-clip "what a day" --image beach.jpg\n'
        '  mmkit predict runs/image_classification-vit --image cat.png',
    )
    pr.add_argument("run", help="run directory, or Hub repo (owner/name, or hf://owner/name when a local folder has the owner's name)")
    pr.add_argument("text", nargs="?", help="the input text (image classification: none)")
    pr.add_argument("--image", help="image tasks: the image file")
    pr.add_argument("--json", action="store_true", help="print the prediction as JSON")
    pr.add_argument("--revision", help="Hub branch, tag or commit (Hub repo ids only)")
    pr.add_argument("--base", help="load the base model from here (must be the adapter's base model)")
    pr.add_argument("--trust-remote-code", action="store_true", help="run Python code shipped with the checkpoint (auto_map); never switched on by a run folder's own config")
    cmp = sub.add_parser(
        "compare",
        help="compare runs: differing config keys, metrics side by side, loss curves overlaid",
        description="Compare finished (or unfinished) runs: print the config keys whose values differ between them "
        "and their metrics.json side by side; with --output, also write compare.png (the runs' training loss on one "
        "plot) and compare.html (both tables and the plot in one self-contained page). Reads only each run's "
        "config.yaml, metrics.json and train_log.jsonl.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  mmkit compare runs/sst2-r8 runs/sst2-r16\n"
        "  mmkit compare runs/sst2-* --output compare/      # also compare/compare.png and compare/compare.html\n\n"
        "train.output_dir is left out of the config table (it always differs); per-class metrics (name/f1, ...) are\n"
        "left out of the metrics table: read them in each run's report.html.",
    )
    cmp.add_argument("runs", nargs="+", metavar="RUN", help="run directories (train.output_dir of each run), two or more")
    cmp.add_argument("--output", help="folder for compare.png and compare.html (created if missing; default: print only)")
    add_hub_commands(sub)
    add_tokenizer_commands(sub)
    return parser


def cmd_train(args) -> int:
    from mmkit.config import load_config
    from mmkit.training.finetune import finetune

    finetune(load_config(args.config, args.overrides))
    return 0


def check_output_folder(given: str, what: str) -> None:
    """--output must be a folder (created if missing): neither a file nor inside one."""
    from pathlib import Path

    output = Path(given).expanduser()
    blocker = next((p for p in (output, *output.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        where = "is a file" if blocker == output else f"is inside {blocker}, which is a file"
        raise UserError(f"--output {given} {where}; give a folder for {what} (it is created if missing)")


ZERO_SHOT_ONLY = (("--labels", "labels"), ("--prompt", "prompt"), ("--prompts", "prompts"), ("--image-only", "image_only"))


def cmd_eval(args) -> int:
    from mmkit.runs.inference import evaluate_run, load_trained

    if args.output:  # before any model loads: metrics.json and the plots go into this folder
        check_output_folder(args.output, "metrics.json, the plots and report.html")
    if not args.zero_shot:
        given = [flag for flag, name in ZERO_SHOT_ONLY if getattr(args, name) not in (None, False)]
        if given:
            raise UserError(
                f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to --zero-shot; add --zero-shot "
                "(with a CLIP checkpoint as RUN) or leave " + ("it" if len(given) == 1 else "them") + " out"
            )
    if args.zero_shot:
        from mmkit.zero_shot import read_prompt_file, zero_shot_eval

        if not args.data:
            raise UserError("--zero-shot needs the rows to score: pass --data FILE (or a Hub dataset id)")
        if args.base:
            raise UserError("--base does not apply to --zero-shot: RUN is the CLIP checkpoint itself")
        labels = [name.strip() for name in args.labels.split(",") if name.strip()] if args.labels else None
        templates = list(args.prompt or []) + (read_prompt_file(args.prompts) if args.prompts else [])
        overrides = {"model.revision": args.revision} if args.revision else None
        task, result, extra, path = zero_shot_eval(
            args.run, args.data, labels, templates or None, not args.image_only, args.split, args.output,
            args.batch_size or 32, overrides,
        )
    else:
        trained = load_trained(args.run, args.revision, args.base, args.trust_remote_code)
        result, extra, path = evaluate_run(trained, args.data, args.split, args.output, args.batch_size)
        task = trained.task
    print(f"{extra['data']} ({extra['num_examples']:,} rows, {extra['eval_runtime_s']} s):")
    print(task.format_metrics(result))
    print(f"metrics written to {path}")
    return 0


def cmd_predict(args) -> int:
    from mmkit.runs.inference import load_trained, predict

    from mmkit.tasks.image_rows import ImageRowsTask

    if args.text is not None and not args.text.strip() and not args.image:  # before the model loads
        raise UserError(f'the text to predict for is empty; pass it after the run: mmkit predict {args.run} "your text"')
    trained = load_trained(args.run, args.revision, args.base, args.trust_remote_code)
    if not isinstance(trained.task, ImageRowsTask):
        if args.image:
            raise UserError(f"a {trained.task.name} model reads no image: pass only the text")
        if not (args.text or "").strip():
            raise UserError(
                f"the text to predict for is {'empty' if args.text is not None else 'missing'}; "
                f'pass it after the run: mmkit predict {args.run} "your text"'
            )
    prediction = predict(trained, {"text": args.text, "image": args.image})
    print(json.dumps(prediction, ensure_ascii=False) if args.json else trained.task.format_prediction(prediction))
    return 0


def cmd_compare(args) -> int:
    from mmkit.runs.compare import compare_runs

    if args.output:
        check_output_folder(args.output, "compare.png and compare.html")
    print(compare_runs(args.runs, args.output))
    return 0


# ----------------------------------------------------------------------------------------------------------
# Hub: push, merge (issue 6)


def add_hub_commands(sub) -> None:
    push = sub.add_parser(
        "push",
        help="upload a run (adapter, head, tokenizer, config, model card) to the Hugging Face Hub",
        description="Upload a finished run to a Hub model repo: only an allow-list of files (adapter or model "
        "weights, tokenizer/processor, labels.json, a cleaned config.yaml, metrics and plots) plus a generated "
        "model card. Never checkpoints, optimizer states, logs or tokens. The endpoint is HF_ENDPOINT, the token "
        "HF_TOKEN or the token cache of `hf auth login`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  mmkit push runs/sentiment-all-MiniLM-L6-v2 --repo-id me/minilm-sst2-lora --dry-run\n"
        "  mmkit push runs/sentiment-all-MiniLM-L6-v2 --repo-id me/minilm-sst2-lora --private",
    )
    push.add_argument("run", help="run directory (train.output_dir of a finished run)")
    push.add_argument("--repo-id", required=True, help="Hub model repo, owner/name (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to push to (created from main if missing; default main)")
    push.add_argument("--commit-message", help="commit message (default: Upload RUN with mmkit)")
    push.add_argument("--dry-run", action="store_true", help="list what would be uploaded; upload nothing")

    merge = sub.add_parser(
        "merge",
        help="merge a LoRA adapter into its base and save a standalone transformers model",
        description="Merge a run's (or Hub repo's) LoRA adapter into the base weights (merge_and_unload) and save "
        "a standalone model with its tokenizer/processor and label maps, loadable with transformers Auto classes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  mmkit merge runs/sentiment-all-MiniLM-L6-v2 --output merged/\n"
        "  mmkit merge me/minilm-sst2-lora --revision v1 --output merged/",
    )
    merge.add_argument("run", help="run directory, or Hub repo id (owner/name)")
    merge.add_argument("--output", required=True, help="new folder for the merged model")
    merge.add_argument("--revision", help="Hub branch, tag or commit (Hub repo ids only)")
    merge.add_argument("--base", help="load the base model from here (must be the adapter's base model)")
    merge.add_argument("--trust-remote-code", action="store_true", help="run Python code shipped with the checkpoint (auto_map); never switched on by a run folder's own config")


def cmd_push(args) -> int:
    from mmkit.hub.push import push_run

    push_run(
        args.run,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        dry_run=args.dry_run,
    )
    return 0


def cmd_merge(args) -> int:
    from mmkit.hub.merge import merge_run

    merge_run(args.run, args.output, args.revision, args.base, trust_remote_code=args.trust_remote_code)
    return 0


# ----------------------------------------------------------------------------------------------------------
# Tokenizer training (translation issue)


def add_tokenizer_commands(sub) -> None:
    tok = sub.add_parser(
        "tokenizer",
        help="train a tokenizer (BPE, WordPiece, Unigram) or show how one splits a text",
        description="Train a tokenizer with the `tokenizers` library on text or JSONL files and save it as a folder "
        "that AutoTokenizer.from_pretrained loads (use it as model.tokenizer of a model.init=scratch run), or "
        "inspect how a tokenizer splits a text.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  mmkit tokenizer train --type bpe --vocab-size 8000 data/train.jsonl --output tok-en-de/\n"
        "  mmkit tokenizer train --type unigram --vocab-size 4000 --special-tokens '<pad>,<unk>,<s>,</s>,<to-zh>' "
        "corpus.txt --output tok/\n  mmkit tokenizer inspect tok-en-de/ \"Two dogs play in the snow.\"",
    )
    tok_sub = tok.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    train = tok_sub.add_parser("train", help="train and save a tokenizer", description="Train and save a tokenizer.")
    train.add_argument("files", nargs="+", help="training text: .txt (one text per line) or .jsonl (see --columns)")
    train.add_argument("--output", required=True, help="new folder for the tokenizer")
    train.add_argument(
        "--type", default="bpe", choices=["bpe", "wordpiece", "unigram"],
        help="bpe: byte-level BPE (default). Every type makes each CJK character of the corpus one token",
    )
    train.add_argument("--vocab-size", type=int, default=8000, help="vocabulary size, special tokens included (default 8000)")
    train.add_argument(
        "--special-tokens", default="<pad>,<unk>,<s>,</s>",
        help="comma-separated, in id order; pad/unk/bos/eos are found by name (<pad> [PAD], <unk> [UNK], <s> [CLS], "
        "</s> [SEP] <|endoftext|>), others become extra special tokens (default: <pad>,<unk>,<s>,</s>)",
    )
    train.add_argument("--columns", default="source,target", help="JSONL: comma-separated text columns to read (default source,target)")
    train.add_argument("--min-frequency", type=int, default=2, help="bpe/wordpiece: fewest occurrences of a merge (default 2)")
    train.add_argument("--model-max-length", type=int, default=512, help="longest input the tokenizer announces (default 512)")
    inspect = tok_sub.add_parser("inspect", help="show the tokens and ids of a text", description="Show the tokens and ids of a text.")
    inspect.add_argument("tokenizer", help="tokenizer folder (or a run / checkpoint folder holding one)")
    inspect.add_argument("text", help="the text to split")


def cmd_tokenizer(args) -> int:
    from mmkit.tokenizer_training import cjk_tokens, describe, train_tokenizer

    if args.tokenizer_command == "train":
        split = lambda text: [part.strip() for part in text.split(",") if part.strip()]  # noqa: E731
        tokenizer = train_tokenizer(
            args.files, args.output, kind=args.type, vocab_size=args.vocab_size, special_tokens=split(args.special_tokens),
            columns=split(args.columns), min_frequency=args.min_frequency, model_max_length=args.model_max_length,
        )
        cjk = cjk_tokens(tokenizer)
        note = f" ({cjk:,} of them CJK characters, one token each)" if cjk else ""
        print(f"{args.type} tokenizer with {len(tokenizer):,} tokens{note} saved to {args.output}")
        return 0
    from mmkit.config import ModelConfig
    from mmkit.models.loading import load_tokenizer

    print(describe(load_tokenizer(args.tokenizer, ModelConfig()), args.text))
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "compare": cmd_compare, "push": cmd_push, "merge": cmd_merge, "tokenizer": cmd_tokenizer}


def quiet_libraries() -> None:
    """bitsandbytes (imported by PEFT when installed) logs on every start that an optional CPU kernel package is
    missing; mmkit works without it, so only its errors are shown."""
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return COMMANDS[args.command](args)


def recipe_main(task: str, argv: list[str] | None = None) -> int:
    """Entry point of `recipes/<task>.py --config FILE [key=value ...]`: the same run as `mmkit train`."""
    parser = argparse.ArgumentParser(
        prog=f"recipes/{task}.py",
        description=f"Fine-tune for {task}. Launch with `accelerate launch recipes/{task}.py --config FILE` "
        "(one or many processes) or plain `python`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_train_epilog(),
    )
    parser.add_argument("--config", required=True, help="YAML config file (see recipes/configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    quiet_libraries()
    args = parser.parse_args(argv)

    @exit_on_user_error
    def run() -> int:
        from mmkit.config import load_config
        from mmkit.training.finetune import finetune

        cfg = load_config(args.config, args.overrides)
        if cfg.task != task:
            raise UserError(f"{args.config} is a '{cfg.task}' config; run it with recipes/{cfg.task}.py or mmkit train")
        finetune(cfg)
        return 0

    return run()


if __name__ == "__main__":
    sys.exit(main())
