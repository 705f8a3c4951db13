# Table 1c: 3 sub-octave scale(s) 2^(k/3), k < 3, x 3 aspect ratio(s)
# [0.5, 1.0, 2.0] per location (9 anchors).
_base_ = '../../retinanet_r18_fpn_deepforest_320px_200e.py'
model = dict(
    bbox_head=dict(
        anchor_generator=dict(scales_per_octave=3, ratios=[0.5, 1.0, 2.0])))
