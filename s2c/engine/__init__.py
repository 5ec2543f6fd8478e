"""Runner-side pieces: weights-only checkpoints, cache checks, hooks."""
from .caches import MissingCacheError, check_caches
from .checkpoint import WeightsOnlyCheckpointHook, from_plain, to_plain

__all__ = ['MissingCacheError', 'check_caches', 'WeightsOnlyCheckpointHook', 'from_plain',
           'to_plain']
