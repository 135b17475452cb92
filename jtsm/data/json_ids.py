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


def _refuse_repeats(items: Any, where: str, list_name: str,
                    fields: tuple[tuple[str, str, int, bool], ...]) -> None:
    """Refuse a list of objects in which a field's value comes twice. ``fields``:
    ``(key, what it is called, characters shown, compared without surrounding space)``;
    anything not a list of objects is left to the reader."""
    if not isinstance(items, list):
        return
    seen: dict[str, dict[Any, int]] = {key: {} for key, *_ in fields}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        for key, what, width, strip in fields:
            if key not in item:
                continue
            value = item[key]
            k = _key(value.strip() if strip and isinstance(value, str) else value)
            if k in seen[key]:
                raise DataError(f"{where}: {list_name}[{i}]: {what} {value!r:.{width}} is listed "
                                f"twice (also {list_name}[{seen[key][k]}])")
            seen[key][k] = i


def check_unique_categories(categories: Any, where: str) -> None:
    """Refuse a ``categories`` list that gives one id or one name twice (names compared
    without surrounding space); anything not a list of objects is left to the reader.

    Raises:
        DataError: ``<where>: categories[3]: category name 'dog' is listed twice (also
            categories[0])`` (``category id 7``).
    """
    _refuse_repeats(categories, where, "categories",
                    (("id", "category id", 40, False), ("name", "category name", 60, True)))


def check_unique_images(images: Any, where: str) -> None:
    """Refuse an ``images`` list that gives one image id or one file name twice; anything
    not a list of objects is left to the reader.

    Raises:
        DataError: ``<where>: images[1]: image id 1 is listed twice (also images[0])`` (``file
            'a.jpg'``).
    """
    _refuse_repeats(images, where, "images",
                    (("id", "image id", 40, False), ("file_name", "file", 60, False)))
