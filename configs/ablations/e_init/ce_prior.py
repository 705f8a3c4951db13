# Sec. 5.1 "Network Initialization": standard cross-entropy (gamma = 0,
# alpha = 0.5, i.e. CE / 2) with the prior initialisation of sec. 4.1
# (classification bias -log((1 - pi) / pi), pi = 0.01; the head's default).
_base_ = '../../retinanet_r18_fpn_deepforest_320px_200e.py'
model = dict(bbox_head=dict(loss_cls=dict(gamma=0.0, alpha=0.5)))
