"""The SAM caches (SE maps, image embeddings): layout, the embedding store, the one
resumable/shardable/verifiable job runner, the two jobs (and both with one encoder pass per
image) and the pre-flight check."""
from .embedding_job import run_embedding_job, write_synthetic_embedding_cache
from .embedding_store import EmbeddingStore
from .layout import EMBEDDING_KIND, SE_MAP_KIND, embedding_dir, se_map_dir
from .preflight import CacheMismatchError, MissingCacheError, check_caches
from .runner import JobOptions
from .sam_jobs import SamCachesSummary, run_sam_cache_jobs
from .se_map_job import run_se_map_job

__all__ = [
    'run_embedding_job', 'write_synthetic_embedding_cache', 'EmbeddingStore', 'EMBEDDING_KIND',
    'SE_MAP_KIND', 'embedding_dir', 'se_map_dir', 'CacheMismatchError', 'MissingCacheError',
    'check_caches', 'JobOptions', 'run_se_map_job', 'run_sam_cache_jobs', 'SamCachesSummary'
]
