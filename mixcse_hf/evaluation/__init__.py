"""Evaluation: STS data and the SentEval protocol, evaluators for training, the MTEB adapter and the CLI."""
