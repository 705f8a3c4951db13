# The paper's schedule (Lin et al. 2017, Sec. 4.1 "Optimization"):
# SGD over 8 GPUs x 2 images (batch 16), lr 0.01, momentum 0.9, weight decay
# 1e-4, 90k iterations, lr divided by 10 at 60k and 80k iterations, with a
# linear warm-up over the first 500 iterations (starting at 0.001 x lr).
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=90000, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# learning rate policy
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=90000,
        by_epoch=False,
        milestones=[60000, 80000],
        gamma=0.1)
]

# optimizer
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
# No gradient clipping, as in the paper and mmdet 3.3.0's RetinaNet configs.
# If a run diverges, add `optim_wrapper.clip_grad=dict(max_norm=35)`.

# lr 0.01 is for a total batch of 16 (8 GPUs x 2 images); `--auto-scale-lr`
# rescales it linearly to the actual total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=16)
