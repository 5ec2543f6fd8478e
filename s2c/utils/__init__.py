"""Small shared helpers: atomic file writes, label PNG I/O, devices, hashing, peak memory."""
from .device import resolve_device
from .fileio import atomic_save_npz, atomic_write, file_sha256
from .label_io import VOC_PALETTE, load_label_png, save_label_png
from .profiling import PeakRSS

__all__ = [
    'resolve_device', 'atomic_write', 'atomic_save_npz', 'file_sha256', 'VOC_PALETTE',
    'load_label_png', 'save_label_png', 'PeakRSS'
]
