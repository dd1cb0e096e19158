"""Placeholder until the refactor: train() still dispatches tasks itself."""
from trainables.train import train as run_task  # noqa: F401
