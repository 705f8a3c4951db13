# Runtime settings shared by all mmretina configs (mirrors mmdet 3.3.0's
# configs/_base_/default_runtime.py, plus the import of our package).
default_scope = 'mmdet'

# Importing mmretina registers the `mmretina.*` modules (RetinaHead,
# FocalLoss, AnchorGenerator, MaxIoUAssigner) and makes full mmengine
# checkpoints loadable under torch>=2.6 (weights_only=True by default).
custom_imports = dict(imports=['mmretina'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
    # mmretina's guards live here, not in custom_hooks: default_hooks is a
    # dict merged key by key, so a config that writes its own custom_hooks
    # (a list, which replaces the base's) keeps them.
    # Stop at the first NaN/inf loss, naming the iteration and the loss
    # term, before CheckpointHook can save NaN weights.
    check_finite_loss=dict(type='mmretina.CheckFiniteLossHook'),
    # Stop before the first iteration when model.bbox_head.num_classes
    # differs from the training set's classes.
    check_num_classes=dict(type='mmretina.NumClassesCheckHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py and tools/test.py switch this to 'gloo' when CUDA is
    # not available, so CPU-only distributed runs work.
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False

custom_hooks = []
