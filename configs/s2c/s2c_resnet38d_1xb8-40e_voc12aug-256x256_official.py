# S2C exactly as the official code (sangrockEG/S2C) trains it: every official behaviour that
# differs from our defaults, selected in one place. Same caches tools and training command:
#   python tools/cache_se_maps.py CONFIG          # SE maps in the official numbering
#   python tools/train.py CONFIG                  # no embedding cache: SAM encodes every crop
# What remains different from an official run: the random streams (MMEngine seeds NumPy/torch
# per worker; the official code draws from Python's `random`), float reordering in batched
# SAM decoding (one decoder call per image instead of per prompt) and PolyLR's (T - 1).
_base_ = ['./s2c_resnet38d_1xb8-40e_voc12aug-256x256.py']

# ---------------------------------------------------------------- change these
data_root = 'data/VOCdevkit/VOC2012'
se_map_dir = 'se_maps/sam_amg-vit_h-first_on_top'  # relative to data_root
# ------------------------------------------------------------------------------

# SE maps (official get_se_map.py): the library's defaults, masks painted in reversed
# generator order with the official ids, made with the exact (library-order) decoder.
se_maps = dict(provider=dict(fast_decoder=False), overlap='first_on_top')

# Official voc12/data.py: SE maps resized with PIL's NEAREST, ids taken as uint8 and numbered
# over the whole rescaled+flipped image before the crop.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadSEMap'),
    dict(type='RandomRescaleLongSide', min_long=256, max_long=512, map_resize='pil'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, prob=0.8),
    dict(type='RandomGrayscale', prob=0.02),
    dict(type='Normalize'),
    dict(type='RenumberSegmentsBeforeCrop', uint8_ids=True),
    dict(type='RandomCrop', crop_size=256),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, se_map_dir=se_map_dir))

model = dict(
    # the uncovered-pixel prototype and zero logits of ids absent from the crop
    ssc=dict(negatives='official'),
    cpm=dict(
        embedding_source='online',       # ViT-H on each crop resized to 1024 x 1024, exact bytes
        embedding_dir=None,
        peak_rule='official',            # plateau corners; the first local peak always dropped
        mask_chain='sam_postprocess',    # Sam.postprocess_masks, then > 0
        ignore_padding=False,            # padded crop pixels are labelled and prompted
        selection='index2',
        confidence='logit_x_meancam'))

# Official PolyOptimizer: SGD(params, lr, weight_decay) puts 5e-4 in the momentum slot.
optim_wrapper = dict(optimizer=dict(momentum=0.0005, weight_decay=0.0005))
