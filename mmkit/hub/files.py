"""Which files of a run may be published (and are fetched back): an allow-list, never "everything but".

Weight files come from the model specs (`mmkit.models.spec.all_weight_files`), so a new model shape cannot
save a file the Hub push silently leaves out.
"""

from __future__ import annotations

import fnmatch

from mmkit.models.spec import all_weight_files
from mmkit.runs.run_dir import CONFIG_FILE, CONFUSION_PLOT_FILE, LABELS_FILE, LOSS_PLOT_FILE, METRICS_FILE

PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "source.spm",
    "target.spm",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
    "image_processor_config.json",
)
RUN_FILES = (CONFIG_FILE, LABELS_FILE, METRICS_FILE, LOSS_PLOT_FILE, CONFUSION_PLOT_FILE, f"eval/{METRICS_FILE}", f"eval/{CONFUSION_PLOT_FILE}")
CARD_FILE = "README.md"  # generated at push time; a README.md in the run dir (PEFT's template) is not used
ALLOWED = (*all_weight_files(), *PROCESSOR_FILES, *RUN_FILES)


def allowed(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in ALLOWED)


DOWNLOAD_PATTERNS = [*ALLOWED, CARD_FILE]
