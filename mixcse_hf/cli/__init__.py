"""The console commands: mixcse-train, mixcse-eval, mixcse-encode, mixcse-push, mixcse-plot."""
