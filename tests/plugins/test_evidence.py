import numpy as np
import pytest
import skimage.data

from jtsm.plugins import get_evidence


def _scene(seed=0, h=80, w=100):
    """A bright disc on a textured dark background; fg seed = the disc's core."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - 40) ** 2 + (xx - 50) ** 2 < 20**2
    img[disc] = rng.integers(200, 255, (disc.sum(), 3))
    core = (yy - 40) ** 2 + (xx - 50) ** 2 < 8**2
    return img, disc, core


@pytest.mark.parametrize("method", ["grabcut", "superpixel-snap", "none"])
def test_firm_pixels_never_flip(method):
    img, disc, core = _scene()
    box = np.array([28, 18, 72, 62], np.float32)
    bg = np.zeros_like(disc)
    bg[40:45, 45:55] = True  # a firm-background strip inside the object
    out = get_evidence(method).refine(img, core & ~bg, box, bg)
    assert out.dtype == bool and out.shape == disc.shape
    assert out[core & ~bg].all()
    assert not out[bg & ~core].any()
    outside = np.ones_like(disc)
    outside[18:62, 28:72] = False
    assert not out[outside].any()


def test_grabcut_grows_seed_to_object():
    img, disc, core = _scene(1)
    out = get_evidence("grabcut").refine(img, core, np.array([25, 15, 76, 66]), None)
    iou_seed = (core & disc).sum() / (core | disc).sum()
    iou_out = (out & disc).sum() / (out | disc).sum()
    assert iou_out > 0.9 > iou_seed


def test_superpixel_snap_follows_edges():
    img, disc, _ = _scene(2)
    rough = np.zeros_like(disc)
    rough[22:58, 32:68] = True  # a box-ish guess
    out = get_evidence("superpixel-snap").refine(img, np.zeros_like(disc), None, None,
                                                 superpixels=disc.astype(int))
    assert not out.any()  # nothing covered: nothing kept
    out = get_evidence("superpixel-snap").refine(img, rough & disc, None, None,
                                                 superpixels=disc.astype(int))
    assert np.array_equal(out, disc)


def test_grabcut_on_real_photo_downscaled_path():
    img = skimage.data.coffee()  # 400x600: exercises the max_side downscale
    h, w = img.shape[:2]
    fg = np.zeros((h, w), bool)
    fg[150:250, 250:350] = True
    out = get_evidence("grabcut").refine(img, fg, np.array([200, 100, 400, 300]), None,
                                         max_side=200)
    assert out[fg].all() and not out[:90].any() and out.sum() >= fg.sum()


def test_grabcut_on_a_cropped_context_agrees_with_the_whole_image():
    import numpy as np

    from jtsm.plugins import get_evidence

    rng = np.random.default_rng(1)
    img = rng.integers(0, 60, (120, 160, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:120, 0:160]
    disc = (yy - 50) ** 2 + (xx - 60) ** 2 < 18**2
    img[disc] = (200, 180, 40)
    core = disc & (abs(yy - 50) <= 3)
    box = np.array([38, 28, 84, 72], np.float32)
    refine = get_evidence("grabcut").refine
    full = refine(img, core, box, None, context=0)
    crop = refine(img, core, box, None)
    assert crop[core].all() and not crop[:, 100:].any()
    assert (full & crop).sum() / (full | crop).sum() > 0.95
    assert (crop & disc).sum() / (crop | disc).sum() > 0.9
