"""Pooling ops: MoIPool (shape-invariant and TPS), and the box conventions they share.

RoIPool, RoIAlign, NMS and box IoU are torchvision's (``torchvision.ops``); :mod:`jtsm.ops.roi_pool`
and :mod:`jtsm.ops.roi_align` only adapt jtsm's box convention to them. Data flows one way:
:mod:`jtsm.modeling` uses these; nothing here imports modeling.
"""

from jtsm.ops.boxes import box_area, box_iou
from jtsm.ops.moi_pool import compensation, moi_pool, superpixel_cell_incidence
from jtsm.ops.proposal_tensors import ProposalTensors, collate_proposals
from jtsm.ops.roi_align import roi_align
from jtsm.ops.roi_pool import roi_pool
from jtsm.ops.tps import moi_tps_pool, tps_control_points

__all__ = [
    "box_area",
    "box_iou",
    "compensation",
    "moi_pool",
    "superpixel_cell_incidence",
    "ProposalTensors",
    "collate_proposals",
    "roi_align",
    "roi_pool",
    "moi_tps_pool",
    "tps_control_points",
]
