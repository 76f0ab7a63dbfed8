"""Publishing: the model card, the files that make a checkpoint load three ways, and pushing to the Hub."""
