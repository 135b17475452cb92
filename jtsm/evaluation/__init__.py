"""Evaluation: panoptic quality (PQ) and Boundary PQ, COCO mask/box AP, VOC detection mAP and
CorLoc, proposal recall. Submodules are imported on use, so importing one metric does not load
the others.

- ``panoptic``: ``evaluate_pq`` (files), ``pq_from_pairs`` and ``PanopticEvaluator`` (in memory)
- ``boundary``: ``evaluate_boundary_pq``, ``boundary_pq_from_pairs``, ``boundary_iou``
  (Boundary IoU and Boundary PQ, Cheng et al., CVPR 2021)
- ``instances``: ``evaluate_ap`` (pycocotools ``COCOeval``, segm and bbox)
- ``detection``: ``evaluate_map`` and ``evaluate_corloc`` (VOC protocol, continuous boxes)
- ``recall``: ``evaluate_recall`` (proposal recall and ABO)
"""
