"""lightning_nas: neural architecture search as a PyTorch Lightning plugin."""

from lightning_nas.arch import Architecture

__version__ = "0.1.0"
__all__ = ["Architecture", "__version__"]
