"""Library entry points behind the tools (callable from a notebook)."""
from .config import build_train_config, load_config, set_data_root
from .test import CamInferenceResult, build_classifier, run_cam_inference
from .train import train

__all__ = [
    'build_train_config', 'load_config', 'set_data_root', 'CamInferenceResult',
    'build_classifier', 'run_cam_inference', 'train'
]
