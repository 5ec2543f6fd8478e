# Runtime defaults shared by every s2c config (MMEngine Runner).
default_scope = 's2c'
custom_imports = dict(
    imports=['s2c.datasets', 's2c.models', 's2c.evaluation', 's2c.engine'],
    allow_failed_imports=False)

# num_threads: torch intra-op threads per process; None = S2C_NUM_THREADS or the cores of the
# process divided among the node's processes (torchrun) less one per data-loader worker.
env_cfg = dict(
    num_threads=None,
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # Logs losses, lr, data/iter time and the ETA every `interval` iterations.
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=1, max_keep_ckpts=3,
                    save_last=True, save_best='cam/mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'))

# Keeps checkpoints loadable with torch.load(weights_only=True) (torch >= 2.6), so that
# --resume works with MMEngine 0.10 (see s2c/engine/hooks/checkpoint_hook.py).
custom_hooks = [dict(type='WeightsOnlyCheckpointHook')]

log_processor = dict(by_epoch=True, window_size=50)
vis_backends = [dict(type='LocalVisBackend')]
# No fixed name: each Runner gets its own visualizer (a fixed name would reuse the first run's
# log folder for every later run in the same process, e.g. a notebook).
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
# Official S2C seed (train.py --seed 5123).
randomness = dict(seed=5123, deterministic=False)
