"""Translation: encoder-decoder (Marian/opus-mt, T5, BART) or decoder-only (GPT-style) models, LoRA or from scratch.

    accelerate launch recipes/translation.py --config recipes/configs/translation_multi30k_en_de.yaml [key=value ...]

The steps, all in `mmkit.training.finetune.finetune`: read source/target pairs (JSONL/CSV columns or Hub `translation`
dicts), tokenize (seq2seq: source -> labels; decoder-only: one sequence from translation.template with the loss
on the target tokens only), load the checkpoint with LoRA on its attention projections, or build the
architecture with random weights (model.init=scratch, with a tokenizer from `mmkit tokenizer train`), train,
keep the best checkpoint by validation BLEU, and score the test split with sacrebleu (BLEU and chrF); sample
translations go to RUN/translations.jsonl. `mmkit train CONFIG` runs the same code.
"""

import sys

from mmkit.cli import recipe_main

if __name__ == "__main__":
    sys.exit(recipe_main("translation"))
