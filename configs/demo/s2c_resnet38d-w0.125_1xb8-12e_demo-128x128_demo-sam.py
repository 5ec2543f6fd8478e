# CPU demo of S2C with the demo's own class-agnostic SAM (what `make demo` runs).
# The 'tiny' SAM (2 ViT blocks, 256 px) is trained by tools/train_demo_sam.py on the object masks
# of the demo TRAIN split only (JPEGImages + SegmentationObject: no class labels, no val image),
# as the real SAM learnt class-agnostic masks on SA-1B. It then does everything the real SAM
# does in S2C:
#   - SE maps for SSC from our segment-everything generator (AMG) on its masks;
#   - CPM prompts it with CAM peaks through the cached image embeddings.
# S2C's loss weights (SSC 1, CPM 1) and CPM settings; the classifier is the demo's small
# randomly initialised ResNet-38d (see cam_resnet38d-w0.125_1xb8-12e_demo-128x128.py).
_base_ = ['./s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py']

demo_sam_checkpoint = 'work_dirs/demo_sam/sam_tiny_demo.pth'
se_map_dir = 'se_maps/sam_tiny_demo'  # relative to data_root
embedding_dir = 'data/demo/sam_embeddings/tiny_demo'

sam = dict(model_type='tiny', checkpoint=demo_sam_checkpoint)
# Our AMG with an 8 x 8 point grid (the demo images are ~160 px with 1-3 large objects). The
# demo SAM's logits are small in magnitude (500 steps from random weights), so
# segment-anything's filters (predicted IoU 0.88, stability 0.95 at offset 1.0) keep no mask
# at all; these were chosen on 20 TRAIN images (71 % of object pixels covered, segment purity
# 0.95 against the train instance masks; the background stays uncovered) - never on val.
se_maps = dict(provider=dict(_delete_=True, type='sam_amg', points_per_side=8,
                             pred_iou_thresh=0.5, stability_score_thresh=0.8,
                             stability_score_offset=0.25, box_nms_thresh=0.7, crop_n_layers=0))

train_dataloader = dict(dataset=dict(se_map_dir=se_map_dir))

model = dict(
    cpm=dict(backend=dict(type='sam', model_type='tiny', checkpoint=demo_sam_checkpoint),
             embedding_dir=embedding_dir, loss_weight=1.0))
