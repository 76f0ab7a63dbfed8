"""Training: arguments and configs, the corpus, the ``MixCSETrainer`` and the job behind ``run_mixcse.py``."""
