# Table 1c: 1 sub-octave scale(s) 2^(k/1), k < 1, x 1 aspect ratio(s)
# [1.0] per location (1 anchors).
_base_ = '../../retinanet_r18_fpn_deepforest_320px_200e.py'
model = dict(
    bbox_head=dict(
        anchor_generator=dict(scales_per_octave=1, ratios=[1.0])))
