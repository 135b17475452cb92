"""Pure-torch pooling ops: MoIPool (shape-invariant and TPS), RoIPool, RoIAlign, boxes.

Data flows one way: :mod:`jtsm.modeling` uses these; nothing here imports modeling.
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
