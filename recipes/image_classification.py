"""Image classification with LoRA on ViT-style checkpoints (AutoModelForImageClassification).

    accelerate launch recipes/image_classification.py --config recipes/configs/image_classification_mvsa_vit.yaml [key=value ...]

The steps, all in `mmkit.training.finetune.finetune`: read image folders (root/<label>/*.jpg), JSONL/CSV rows with an
image path, or Hub datasets with an Image feature; check every image once; replace the checkpoint's head with
one for your labels; LoRA on q_proj/v_proj (head trained in full); train with images decoded per batch; keep
the best checkpoint; evaluate on test. `mmkit train CONFIG` runs the same code.
"""

import sys

from mmkit.cli import recipe_main

if __name__ == "__main__":
    sys.exit(recipe_main("image_classification"))
