# RetinaNet R-50-FPN, the paper's setting: 90k iterations at batch 16
# (8 GPUs x 2 images), lr 0.01, steps at 60k / 80k, COCO train2017 -> val2017.
#
#   bash tools/dist_train.sh configs/retinanet_r50_fpn.py 8
#
# With fewer GPUs, add --auto-scale-lr (linear scaling from batch 16).
_base_ = [
    './_base_/models/retinanet_r50_fpn.py',
    './_base_/datasets/coco_detection.py',
    './_base_/schedules/schedule_90k.py',
    './_base_/default_runtime.py',
]

# 2 images per GPU; an iteration-based loop needs an infinite sampler.
train_dataloader = dict(batch_size=2, sampler=dict(type='InfiniteSampler'))

# checkpoint (and validate) every 10k iterations; log per iteration.
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
