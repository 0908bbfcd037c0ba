"""The user-facing commands: the CLI, the demo, evaluation and export."""
