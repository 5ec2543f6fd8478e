# CPU demo of S2C with the demo's own class-agnostic SAM (what `make demo` runs).
# The 'tiny' SAM (2 ViT blocks, 256 px) is trained by tools/train_demo_sam.py on the object masks
# of the demo TRAIN split only (JPEGImages + SegmentationObject: no class labels, no val image),
# as the real SAM learnt class-agnostic masks on SA-1B. It then does everything the real SAM
# does in S2C:
#   - SE maps for SSC from our segment-everything generator (AMG) on its masks;
#   - CPM prompts it with CAM peaks through the cached image embeddings.
# S2C's loss weights (SSC 1, CPM 1) and CPM settings, except two choices that follow from what
# the demo SAM is (both below: SSC's softmax and CPM's mask selection, each from the official
# code or SAM's own predictor, each measured on the train split) and one for time (CPM's
# prompt CAMs without the 2.0 view, below); the classifier is the demo's
# small randomly initialised ResNet-38d (see cam_resnet38d-w0.125_1xb8-12e_demo-128x128.py).
_base_ = ['./s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py']

demo_sam_checkpoint = 'work_dirs/demo_sam/sam_tiny_demo.pth'
se_map_dir = 'se_maps/sam_tiny_demo'  # relative to data_root
embedding_dir = 'data/demo/sam_embeddings/tiny_demo'

sam = dict(model_type='tiny', checkpoint=demo_sam_checkpoint)
# Our AMG with an 8 x 8 point grid (the demo images are ~160 px with 1-3 large objects). The
# demo SAM's logits are small in magnitude (500 steps from random weights), so
# segment-anything's filters (predicted IoU 0.88, stability 0.95 at offset 1.0) keep no mask
# at all; these were chosen on 20 TRAIN images (71 % of their object pixels covered, segment
# purity 0.95 against the instance masks) - never on val. Over all 240 train images: 55 % of
# the object pixels and 0.2 % of the background covered, purity 95.5 %, 2.2 segments per image.
se_maps = dict(provider=dict(_delete_=True, type='sam_amg', points_per_side=8,
                             pred_iou_thresh=0.5, stability_score_thresh=0.8,
                             stability_score_offset=0.25, box_nms_thresh=0.7, crop_n_layers=0))

# SSC with the official code's softmax (negatives='official'): besides the crop's segments,
# the mean feature of the pixels no segment covers is a negative prototype (official
# model_s2c.py; it needs the official segment numbering, hence RenumberSegmentsBeforeCrop
# right before RandomCrop). The demo SAM learnt objects only, so its SE maps leave the
# background uncovered (0.2 % of the background pixels of the train images covered, 55 % of
# the object pixels): with the paper's softmax over the crop's own segments SSC never contrasts
# an object with the background, and an image with one object contributes nothing. Measured
# on the TRAIN split (multi-scale CAM mIoU; CAM baseline 62.3): SSC alone 34.9 with the
# paper's softmax, 49.7 with the official one; S2C 61.6 and 75.2.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadSEMap'),
    dict(type='RandomRescaleLongSide', min_long=112, max_long=176),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ColorJitter', brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, prob=0.8),
    dict(type='Normalize'),
    dict(type='RenumberSegmentsBeforeCrop', uint8_ids=True),
    dict(type='RandomCrop', crop_size=128),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(dataset=dict(se_map_dir=se_map_dir, pipeline=train_pipeline))

# CPM picks the mask its SAM rates best (selection='best_iou', as SAM's own predictor and AMG
# do) instead of S2C's multimask output 2. The real SAM's output 2 is its coarsest, whole-object
# mask; the demo SAM learnt single-level objects with the loss on the best of its three outputs,
# so only one output ever learnt and its output 2 is untrained. Measured on the TRAIN split
# (CAM-baseline CAMs prompting the demo SAM, `sam` pseudo-labels): output 2 gives 11.1 mIoU,
# best predicted IoU 66.2 (the CAMs alone: 62.3).
# CPM's prompt CAMs at scales 0.5, 1.0, 1.5 of the crop instead of S2C's 0.5-2.0: the 2.0 view
# (a 256 px forward) costs 4 of the 7.5 crop-forwards of S2C's four views, 0.5 s of a 1.7 s
# step on one CPU thread, and `make demo` has to stay within 15 min on 2 cores. Chosen for time
# alone, before any run with it.
model = dict(
    ssc=dict(negatives='official'),
    cpm=dict(backend=dict(type='sam', model_type='tiny', checkpoint=demo_sam_checkpoint),
             embedding_dir=embedding_dir, selection='best_iou', loss_weight=1.0,
             scales=(0.5, 1.0, 1.5)))
