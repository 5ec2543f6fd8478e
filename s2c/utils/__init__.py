"""Small shared helpers (lowest layer): atomic file I/O, hashing, image / label / SE-map I/O,
strict checkpoint loading, devices, ranks and shards, manifests, job summaries."""
from .checkpoint import load_state_dict_strict, load_torch_file, read_state_dict
from .device import resolve_device
from .fileio import atomic_save_json, atomic_save_npz, atomic_write, clean_stale_tmp
from .hashing import checkpoint_sha256, file_sha256, short_hash
from .image_io import image_size, read_rgb_image
from .job_summary import FailureLog, JobSummary
from .label_io import VOC_PALETTE, load_label_png, save_label_png
from .manifest import ManifestMismatchError, ManifestUnreadableError, claim_folder
from .profiling import PeakRSS
from .se_map_io import load_se_map, save_se_map

__all__ = [
    'load_state_dict_strict', 'load_torch_file', 'read_state_dict', 'resolve_device',
    'atomic_save_json', 'atomic_save_npz', 'atomic_write', 'clean_stale_tmp',
    'checkpoint_sha256', 'file_sha256', 'short_hash', 'image_size', 'read_rgb_image',
    'FailureLog', 'JobSummary', 'VOC_PALETTE', 'load_label_png', 'save_label_png',
    'ManifestMismatchError', 'ManifestUnreadableError', 'claim_folder', 'PeakRSS',
    'load_se_map', 'save_se_map'
]
