"""Ids in a dataset json (``images[].id``, ``categories[].id``, ``image_id``,
``category_id``, segment ids), read one way by every reader.

An id is a JSON integer; ``7.0`` (a float that some writers produce for an integer) counts as
``7``. ``7.9``, ``true``, ``"7"``, ``null`` and lists are refused with one line naming the
entry, so a json that trains is a json that predicts and evaluates. A category id or name, an
image id or file name listed twice is refused too (:func:`check_unique_categories`,
:func:`check_unique_images`): one of them would be dropped, or a label by name would pick one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jtsm.errors import DataError

__all__ = ["check_unique_categories", "check_unique_images", "json_id"]


def json_id(value: Any, where: str) -> int:
    """``value`` as an ``int`` id; ``where`` names the entry in the error (e.g.
    ``"labels.json: images[3].id"``).

    Raises:
        DataError: ``value`` is not an integer (see the module docstring).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)) or (
            isinstance(value, (float, np.floating)) and not float(value).is_integer()):
        raise DataError(f"{where}: expected an integer id, got a non-integer id {value!r:.60}")
    return int(value)


def _key(value: Any) -> Any:
    """A hashable stand-in for an id or name (ids as ``json_id`` reads them, when they are)."""
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    try:
        hash(value)
    except TypeError:
        return ("unhashable", repr(value))
    return value


def check_unique_categories(categories: Any, where: str) -> None:
    """Refuse a ``categories`` list that gives one id or one name twice (names compared
    without surrounding space); anything not a list of objects is left to the reader.

    Raises:
        DataError: ``<where>: categories[3]: category name 'dog' is listed twice (also
            categories[0])`` (``category id 7``).
    """
    if not isinstance(categories, list):
        return
    ids: dict[Any, int] = {}
    names: dict[Any, int] = {}
    for i, c in enumerate(categories):
        if not isinstance(c, dict):
            continue
        if "id" in c:
            cid = _key(c["id"])
            if cid in ids:
                raise DataError(f"{where}: categories[{i}]: category id {c['id']!r:.40} is "
                                f"listed twice (also categories[{ids[cid]}])")
            ids[cid] = i
        if "name" in c:
            name = _key(c["name"].strip() if isinstance(c["name"], str) else c["name"])
            if name in names:
                raise DataError(f"{where}: categories[{i}]: category name {c['name']!r:.60} is "
                                f"listed twice (also categories[{names[name]}])")
            names[name] = i


def check_unique_images(images: Any, where: str) -> None:
    """Refuse an ``images`` list that gives one image id or one file name twice; anything
    not a list of objects is left to the reader.

    Raises:
        DataError: ``<where>: images[1]: image id 1 is listed twice (also images[0])`` (``file
            'a.jpg'``).
    """
    if not isinstance(images, list):
        return
    ids: dict[Any, int] = {}
    names: dict[Any, int] = {}
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            continue
        if "id" in im:
            iid = _key(im["id"])
            if iid in ids:
                raise DataError(f"{where}: images[{i}]: image id {im['id']!r:.40} is listed "
                                f"twice (also images[{ids[iid]}])")
            ids[iid] = i
        if "file_name" in im:
            name = _key(im["file_name"])
            if name in names:
                raise DataError(f"{where}: images[{i}]: file {im['file_name']!r:.60} is listed "
                                f"twice (also images[{names[name]}])")
            names[name] = i
