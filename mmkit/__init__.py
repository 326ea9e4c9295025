"""mmkit: LoRA fine-tuning of pretrained text, vision and vision-language models for NER, sentiment,
translation and image+text sentiment, on the Hugging Face stack."""

__version__ = "0.1.0"
