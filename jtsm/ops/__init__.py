"""Pure-torch pooling ops: MoIPool (shape-invariant and TPS), RoIPool, RoIAlign, boxes.

Data flows one way: :mod:`jtsm.modeling` uses these; nothing here imports modeling.
"""

from jtsm.ops.boxes import box_area, box_iou
from jtsm.ops.moi_pool import compensation, moi_pool, superpixel_cell_incidence
from jtsm.ops.proposal_tensors import ProposalTensors, collate_proposals
from jtsm.ops.roi_pool import roi_pool

__all__ = [
    "box_area",
    "box_iou",
    "compensation",
    "moi_pool",
    "superpixel_cell_incidence",
    "ProposalTensors",
    "collate_proposals",
    "roi_pool",
]
