"""MIL and refinement losses against hand-computed values; OICR label assignment."""

from __future__ import annotations

import math

import torch

from jtsm.modeling.losses import class_seeds, mil_loss, refinement_loss, refinement_targets
from jtsm.modeling.mining_head import MiningHead
from jtsm.ops.boxes import box_iou


def test_mil_loss_hand_computed():
    y = torch.tensor([0.8, 0.3, 0.5])
    t = torch.tensor([1.0, 0.0, 1.0])
    expect = -(math.log(0.8) + math.log(0.7) + math.log(0.5))
    torch.testing.assert_close(mil_loss(y, t), torch.tensor(expect))
    torch.testing.assert_close(mil_loss(y, t, reduction="mean"), torch.tensor(expect / 3))


def test_mil_loss_finite_at_exact_zero_and_one():
    for dtype in (torch.float32, torch.float64, torch.float16):
        y = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=dtype, requires_grad=True)
        t = torch.tensor([1.0, 0.0, 0.0, 1.0])
        loss = mil_loss(y, t, eps=1e-6)
        assert torch.isfinite(loss), dtype
        loss.backward()
        assert torch.isfinite(y.grad).all(), dtype
    # two terms at -log(eps), two at -log(1 - eps)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    expect = -2 * math.log(1e-6) - 2 * math.log(1 - 1e-6)
    torch.testing.assert_close(mil_loss(y, t, 1e-6), torch.tensor(expect, dtype=torch.float64))


def test_mil_scores_are_eq2_product_of_softmaxes():
    torch.manual_seed(0)
    head = MiningHead(in_features=12, num_classes=3, hidden=8, num_refine=2, dropout=0.0)
    x = torch.randn(5, 3, 2, 2)
    out = head(x)
    h = head.fc(x.permute(0, 2, 3, 1).flatten(1))
    sc, sd = head.mil_cls(h), head.mil_det(h)
    ref = torch.empty(5, 3)
    for p in range(5):
        for c in range(3):
            over_classes = sc[p, c].exp() / sc[p].exp().sum()
            over_proposals = sd[p, c].exp() / sd[:, c].exp().sum()
            ref[p, c] = over_classes * over_proposals
    torch.testing.assert_close(out["mil_scores"], ref)
    torch.testing.assert_close(out["image_scores"], ref.sum(0))
    assert len(out["refine_logits"]) == 2 and out["refine_logits"][0].shape == (5, 4)
    avg = (out["refine_probs"][0] + out["refine_probs"][1]) / 2
    torch.testing.assert_close(out["scores"], avg[:, :3])


def test_zero_refinement_heads_scores_are_mil():
    head = MiningHead(in_features=4, num_classes=2, hidden=4, num_refine=0, dropout=0.0)
    out = head(torch.randn(3, 4))
    assert out["refine_logits"] == [] and torch.equal(out["scores"], out["mil_scores"])


def _boxes():
    return torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # 0: pseudo gt of class 0
            [1.0, 0.0, 10.0, 10.0],  # 1: IoU 0.9 with 0
            [0.0, 0.0, 10.0, 4.0],  # 2: IoU 0.4 with 0 -> background
            [20.0, 20.0, 30.0, 30.0],  # 3: pseudo gt of class 2
            [22.0, 20.0, 30.0, 30.0],  # 4: IoU 0.8 with 3
            [50.0, 50.0, 60.0, 60.0],  # 5: overlaps nothing
            [0.0, 0.0, 10.0, 5.0],  # 6: IoU exactly 0.5 with 0 -> foreground
        ]
    )


def test_refinement_targets_constructed_case():
    boxes = _boxes()
    prev = torch.full((7, 3), 0.01)
    prev[0, 0] = 0.9
    prev[3, 2] = 0.7
    prev[1, 1] = 0.99  # class 1 absent from the tags: must be ignored
    tags = torch.tensor([1.0, 0.0, 1.0])
    labels, weights = refinement_targets(prev, tags, lambda i: box_iou(boxes, boxes[i]))
    assert labels.tolist() == [0, 0, 3, 2, 2, 3, 0]  # 3 = background
    # weight = score of the most-overlapping pseudo gt (also for background proposals)
    torch.testing.assert_close(weights, torch.tensor([0.9, 0.9, 0.9, 0.7, 0.7, 0.9, 0.9]))


def test_refinement_targets_from_previous_head_with_background_column():
    boxes = _boxes()
    prev = torch.full((7, 4), 0.01)  # (P, C + 1) probabilities of the previous head
    prev[4, 2] = 0.6  # now proposal 4 is the pseudo gt of class 2
    prev[6, 0] = 0.8
    prev[5, 3] = 0.99  # background column never selects a pseudo gt
    tags = torch.tensor([1.0, 0.0, 1.0])
    labels, weights = refinement_targets(prev, tags, lambda i: box_iou(boxes, boxes[i]))
    assert labels.tolist() == [0, 3, 0, 2, 2, 3, 0]  # 1 has IoU 45/95 with the new gt 6
    torch.testing.assert_close(weights[[0, 3, 5]], torch.tensor([0.8, 0.6, 0.8]))


def test_stuff_seeds_teach_a_second_region_of_a_stuff_class_its_class():
    """Class 1 (stuff, ``num_things=1``) covers two regions: OICR's single pseudo ground truth
    teaches the second as background; with ``stuff_seeds=2`` it takes the class, weighted by
    its own score. A proposal scoring under half the top, or overlapping a chosen one above
    0.2, is no pseudo ground truth. Class 0, a thing, keeps its single one either way."""
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0],  # 0: region A (top)
                          [1.0, 1.0, 10.0, 10.0],  # 1: A again, IoU 0.81 with 0
                          [40.0, 40.0, 50.0, 50.0],  # 2: region B
                          [41.0, 40.0, 50.0, 50.0],  # 3: B again, IoU 0.9 with 2
                          [70.0, 0.0, 80.0, 10.0],  # 4: elsewhere, under half the top
                          [0.0, 0.0, 5.0, 10.0],  # 5: half of A: second best, overlaps A
                          [70.0, 70.0, 80.0, 80.0],  # 6: the thing's top proposal
                          [70.0, 40.0, 80.0, 50.0]])  # 7: a second thing
    prev = torch.full((8, 2), 0.01)
    prev[:6, 1] = torch.tensor([0.9, 0.5, 0.6, 0.3, 0.2, 0.8])
    prev[6, 0], prev[7, 0] = 0.9, 0.8
    tags = torch.tensor([1.0, 1.0])

    def iou(i: torch.Tensor) -> torch.Tensor:
        return box_iou(boxes, boxes[i])

    one, _ = refinement_targets(prev, tags, iou, num_things=1)
    assert one.tolist() == [1, 1, 2, 2, 2, 1, 0, 2]  # 2 = background
    labels, weights = refinement_targets(prev, tags, iou, stuff_seeds=2, num_things=1)
    assert labels.tolist() == [1, 1, 1, 1, 2, 1, 0, 2]
    torch.testing.assert_close(weights[[0, 2, 3, 6]], torch.tensor([0.9, 0.6, 0.6, 0.9]))
    idx, w, cls, chosen = class_seeds(prev[:, [1]], torch.tensor([1]), iou, [True], 5)
    assert idx[chosen].tolist() == [0, 2]  # 4 scores < 0.45, 5 overlaps 0 (and 1, 3 theirs)
    assert cls.tolist() == [1] * 8 and idx.tolist()[:3] == [0, 5, 2]  # candidates, best first
    torch.testing.assert_close(w[chosen], torch.tensor([0.9, 0.6]))
    one_only, *_, chosen1 = class_seeds(prev[:, [1]], torch.tensor([1]), iou, [True], 2)
    assert one_only[chosen1].tolist() == [0, 2]
    idx, _, cls, chosen = class_seeds(prev, torch.tensor([0, 1]), iou, [False, True], 5)
    assert idx[chosen].tolist() == [6, 0, 2] and cls[chosen].tolist() == [0, 1, 1]
    listed = refinement_targets(prev, tags, iou, stuff_seeds=2, num_things=1,
                                host_classes=[0, 1])
    assert torch.equal(listed[0], labels) and torch.equal(listed[1], weights)
    same = refinement_targets(prev, tags, iou, stuff_seeds=2, num_things=2)  # no stuff class
    assert torch.equal(same[0], refinement_targets(prev, tags, iou)[0])


def test_refinement_loss_hand_computed():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    weights = torch.tensor([0.5, 2.0])
    ls0 = 2.0 - math.log(math.exp(2) + 1 + math.exp(1))
    ls1 = 0.0 - math.log(1 + math.e + 1)
    expect = -(0.5 * ls0 + 2.0 * ls1) / 2
    torch.testing.assert_close(refinement_loss(logits, labels, weights), torch.tensor(expect))


def test_refinement_targets_with_the_callers_classes_are_the_same():
    """Classes found once by the caller (on the host) give the targets of the per-head
    ``nonzero``, bit for bit, including an image without tags."""
    gen = torch.Generator().manual_seed(4)
    boxes = _boxes()
    for trial in range(20):
        prev = torch.rand(7, 4 if trial % 2 else 3, generator=gen)
        tags = (torch.rand(3, generator=gen) < 0.5).float()
        if trial == 0:
            tags[:] = 0
        classes = torch.nonzero(tags > 0).squeeze(1)
        a = refinement_targets(prev, tags, lambda i: box_iou(boxes, boxes[i]))
        b = refinement_targets(prev, tags, lambda i: box_iou(boxes, boxes[i]), classes=classes)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_semantic_loss_is_the_mean_bit_for_bit_with_no_host_read():
    import torch.nn.functional as F

    from jtsm.modeling.losses import semantic_loss
    from jtsm.ops.sync_counter import HostSyncCounter

    gen = torch.Generator().manual_seed(0)
    for h, w, s in ((5, 7, 1), (40, 33, 4), (300, 250, 6)):
        logits = (torch.randn(1, s, h, w, generator=gen) * 4).requires_grad_()
        target = torch.randint(-1, s, (h, w), generator=gen)
        ref = F.cross_entropy(logits, target[None], ignore_index=-1)
        (g_ref,) = torch.autograd.grad(ref * 0.3, logits)
        with HostSyncCounter() as c:
            got = semantic_loss(logits, target)
        (g_got,) = torch.autograd.grad(got * 0.3, logits)
        assert c.count == 0, c.summary()
        assert torch.equal(got, ref) and torch.equal(g_got, g_ref)
    none = semantic_loss(logits, torch.full((h, w), -1))  # nothing labelled: 0, in the graph
    (g,) = torch.autograd.grad(none, logits)
    assert none.item() == 0.0 and not g.any()


def test_class_seeds_are_the_sequential_greedy_choice_on_random_scenes():
    """The fixed-shape rounds of ``class_seeds`` choose what the plain greedy loop chooses:
    candidates best first, each kept when it scores at least half the top, overlaps no kept
    one above 0.2 and the limit is not reached."""
    from jtsm.modeling.losses import SEED_CANDIDATES, SEED_OVERLAP, SEED_RATIO

    gen = torch.Generator().manual_seed(7)
    for trial in range(30):
        p = int(torch.randint(5, 80, (1,), generator=gen))
        xy = torch.rand(p, 2, generator=gen) * 100
        boxes = torch.cat([xy, xy + torch.rand(p, 2, generator=gen) * 50 + 2], 1)
        scores = torch.rand(p, 3, generator=gen) ** 4  # peaky, as trained scores are
        limit = 1 + trial % 6

        def iou(i: torch.Tensor, boxes: torch.Tensor = boxes) -> torch.Tensor:
            return box_iou(boxes, boxes[i])

        idx, w, cls, chosen = class_seeds(scores, torch.tensor([4, 5, 6]), iou,
                                          [True, False, True], limit)
        got = {c: idx[chosen & (cls == c)].tolist() for c in (4, 5, 6)}
        for j, c in enumerate((4, 5, 6)):
            order = torch.argsort(scores[:, j], descending=True, stable=True)
            order = order[:SEED_CANDIDATES]
            want = [int(order[0])]
            for q in order[1:].tolist():
                if j == 1 or len(want) >= limit:
                    break
                if scores[q, j] < SEED_RATIO * scores[order[0], j]:
                    break
                if box_iou(boxes[[q]], boxes[want]).max() <= SEED_OVERLAP:
                    want.append(q)
            assert got[c] == want, (trial, c)
