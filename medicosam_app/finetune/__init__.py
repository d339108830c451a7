"""Interactive finetuning: the prompt encoder and mask decoder learn from accepted labels with simulated
prompts, on cached embeddings (the encoder stays frozen), gated by the evaluation before it is served."""
