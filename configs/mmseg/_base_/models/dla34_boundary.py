# DLA-34 + DLA-Up at stride 2 for boundary detection (paper §5.4; the DLA code's `dla_up.py` DLASeg with
# down_ratio=2): the IDA-Up model of dla34_idaup.py (written out there) with levels 1-5 aggregated up to stride 2, a
# 1x1 classifier, logits resized to the input.
# Output: 2 classes with weighted cross-entropy, as the DLA code (log-softmax + NLLLoss2d(weight=[1, 10])). For one
# channel with BCE(pos_weight=10) as DLA-AFA: decode_head=dict(out_channels=1, threshold=0.5); the loss follows.
_base_ = ['./dla34_idaup.py']
model = dict(
    backbone=dict(out_indices=(1, 2, 3, 4, 5)),
    decode_head=dict(
        in_channels=[32, 64, 128, 256, 512],
        strides=[2, 4, 8, 16, 32],
        in_index=[0, 1, 2, 3, 4],
        num_classes=2,
        loss_decode=dict(_delete_=True, type='WeightedBoundaryLoss', edge_weight=10.0)))
