"""Models: the pooler registry (``pooling``), the inference wrapper (``encoder.SentenceEncoder``), batches of text
columns (``batch``), packed rows (``packing``) and LoRA (``lora``)."""
