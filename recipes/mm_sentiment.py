"""Image + text sentiment (multimodal sentiment) with LoRA on CLIP, BLIP-2, LLaVA or a two-tower model.

    accelerate launch recipes/mm_sentiment.py --config recipes/configs/mm_sentiment_mvsa_clip.yaml [key=value ...]

The steps, all in `mmkit.training.finetune.finetune`: read the rows and check every image once (present, inside the
image root, decodable) and every text (not empty, not longer than the model reads), load the backbone family
the checkpoint is (mmkit/multimodal/), put an MLP head on its pooled image+text features, attach LoRA to the
towers in `lora.towers` only (head, and LLaVA's projector when asked, trained in full), train with Accelerate
decoding images per batch, keep the best checkpoint, evaluate on test. `mmkit train CONFIG` runs the same code.
"""

import sys

from mmkit.cli import recipe_main

if __name__ == "__main__":
    sys.exit(recipe_main("mm_sentiment"))
