"""levit-weights: checkpoint converter and golden-output dumper for levit-rs.

The Rust engine only reads `.lvt` files (docs/weight-format.md). All PyTorch- and
timm-specific knowledge (key layouts, BatchNorm folding, config inference) lives here
so the engine never has to know about checkpoints.
"""

__version__ = "0.1.0"
