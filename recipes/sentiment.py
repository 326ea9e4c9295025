"""Sentiment fine-tuning (sequence classification) with LoRA.

    accelerate launch recipes/sentiment.py --config recipes/configs/sentiment_minilm.yaml [key=value ...]

The steps, all in `mmkit.training.finetune.finetune`: read and validate the splits and labels, load the backbone with a
new classification head, attach LoRA (head trained in full), train with Accelerate (length-grouped batches,
evaluation each epoch, resumable checkpoints), keep the best checkpoint, save adapter + head + tokenizer,
evaluate on test. `mmkit train CONFIG` runs the same code.
"""

import sys

from mmkit.cli import recipe_main

if __name__ == "__main__":
    sys.exit(recipe_main("sentiment"))
