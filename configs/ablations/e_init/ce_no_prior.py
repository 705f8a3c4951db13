# Sec. 5.1 "Network Initialization": standard cross-entropy (gamma = 0,
# alpha = 0.5) without the prior: every head conv, the classification
# output included, gets N(0, 0.01) weights and bias 0, so every anchor
# starts at p = 0.5. The paper reports that this diverges.
_base_ = '../../retinanet_r18_fpn_deepforest_320px_200e.py'
model = dict(
    bbox_head=dict(
        loss_cls=dict(gamma=0.0, alpha=0.5),
        init_cfg=dict(
            type='Normal', layer='Conv2d', std=0.01)))
