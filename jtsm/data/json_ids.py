"""Ids in a dataset json (``images[].id``, ``categories[].id``, ``image_id``,
``category_id``, segment ids), read one way by every reader.

An id is a JSON integer; ``7.0`` (a float that some writers produce for an integer) counts as
``7``. ``7.9``, ``true``, ``"7"``, ``null`` and lists are refused with one line naming the
entry, so a json that trains is a json that predicts and evaluates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jtsm.errors import DataError

__all__ = ["json_id"]


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
