"""NER fine-tuning (token classification) with LoRA.

    accelerate launch recipes/ner.py --config recipes/configs/ner_conll2003.yaml [key=value ...]

The steps, all in `mmkit.training.finetune.finetune`: read words + tags (JSONL, CoNLL column files or Hub datasets),
settle the tag set, cut long sentences into overlapping windows (first sub-token of each word labelled),
train with LoRA (token classification head trained in full), keep the best checkpoint by entity F1, evaluate
with seqeval on whole sentences. `mmkit train CONFIG` runs the same code.
"""

import sys

from mmkit.cli import recipe_main

if __name__ == "__main__":
    sys.exit(recipe_main("ner"))
