"""mmkit: LoRA fine-tuning of pretrained text, vision and vision-language models for NER, sentiment,
translation and image+text sentiment, on the Hugging Face stack.

    import mmkit
    model = mmkit.load_run("runs/sentiment-all-MiniLM-L6-v2")   # a run folder or a Hub repo id
    model.predict("a warm, funny film")                          # {"label": ..., "probabilities": {...}}
"""

from mmkit._version import __version__  # noqa: F401 - a leaf module: mmkit's parts read it without importing this one


def load_run(run_or_repo: str, revision: str | None = None, base: str | None = None):
    """A finished run (its folder, or a Hub repo pushed with `mmkit push`), ready to `.predict(text=, image=)`."""
    from mmkit.runs.inference import load_trained

    return load_trained(run_or_repo, revision, base)
