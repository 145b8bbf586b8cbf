"""wmtool: one command-line toolkit for world-model reinforcement learning."""

__version__ = "0.2.0"
