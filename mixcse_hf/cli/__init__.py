"""The console commands (``mixcse-*``), one module each: argument parsing and the loading of their inputs."""
