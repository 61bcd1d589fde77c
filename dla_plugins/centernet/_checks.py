"""Argument checks shared by the ctdet pieces."""
from typing import Optional


def check_int(name: str, value: object, low: int, allowed: str, high: Optional[int] = None) -> None:
    """Raise ``ValueError('<name>: <value>; allowed: <allowed>')`` unless ``value`` is an int (not a bool) in
    ``low..high`` (no upper bound when ``high`` is None)."""
    if (isinstance(value, bool) or not isinstance(value, int) or value < low
            or (high is not None and value > high)):
        raise ValueError(f'{name}: {value!r}; allowed: {allowed}')
