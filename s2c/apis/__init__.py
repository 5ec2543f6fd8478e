"""Library entry points behind the tools (callable from a notebook)."""
from .config import build_train_config, set_data_root
from .train import train

__all__ = ['build_train_config', 'set_data_root', 'train']
