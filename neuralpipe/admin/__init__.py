"""Administration of the nodes a command talks to: models on an ML node."""
