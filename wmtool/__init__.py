"""wmtool: one command-line toolkit for world-model reinforcement learning."""

__version__ = "0.1.0"
