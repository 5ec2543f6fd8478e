# Tiny SAM for tests and the CPU demo: a 2-block ViT at 256 px input (embedding 256 x 16 x 16),
# built by the same code as the real models; ~128 KiB per cached embedding.
# checkpoint=None means RANDOM WEIGHTS: the cache jobs build it after torch.manual_seed(0) so
# every process builds the same model, warn loudly, and record it in the cache manifests.
# se_maps / sam_embeddings: as in sam_vit_h.py.
_base_ = ['./sam_vit_h.py']

sam = dict(model_type='tiny', checkpoint=None)
