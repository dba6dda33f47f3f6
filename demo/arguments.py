"""The API's arguments checked before any work: every value from the network is hostile until it passes here.

Each check returns the value in the type the app works with, or raises ArgumentError with one line for a person
that says what was wrong and never repeats what was sent (a 100,000-character string comes back as a short
message, not as itself). Uploaded files are checked by ``demo.uploads``, photos by ``demo.photo``.
"""

import math
from collections.abc import Collection, Sequence
from numbers import Real

#: Longest validation-example name looked up (the bundled ones are under 60 characters).
MAX_NAME_LENGTH = 200


class ArgumentError(ValueError):
    """An argument of the wrong type or out of range; the message is one line meant for a person."""


def number(value: object, what: str) -> float:
    """``value`` as a finite float: an int or float (not a bool, a string, a list or NaN)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ArgumentError(f"{what} must be a number.")
    result = float(value)
    if not math.isfinite(result):
        raise ArgumentError(f"{what} must be a finite number.")
    return result


def opacity(value: object) -> float:
    """The overlay's opacity: a number from 0 to 1 (refused outside, not clamped)."""
    result = number(value, "Opacity")
    if not 0.0 <= result <= 1.0:
        raise ArgumentError("Opacity must be from 0 to 1.")
    return result


def corruption(value: object, names: Sequence[str]) -> str:
    """The name of a corruption the page offers (``names``, the first being "none"), named as the API lists them."""
    if not isinstance(value, str) or value not in names:
        raise ArgumentError(f"The corruption must be {names[0]!r} or one of the {len(names) - 1} names the API lists.")
    return value


def severity(value: object, levels: Sequence[int]) -> int:
    """A corruption's severity: one of the whole numbers ``levels`` (a float such as 3.0 from a slider is that
    number; 2.5 is refused)."""
    result = number(value, "Severity")
    if not result.is_integer() or int(result) not in levels:
        raise ArgumentError(f"Severity must be a whole number from {min(levels)} to {max(levels)}.")
    return int(result)


def coordinate(value: object, what: str) -> float | None:
    """A query coordinate in pixels: None or "" (the photo's centre), else a number of at least 0; the photo's
    size bounds it from above (``within``)."""
    if value is None or value == "":
        return None
    result = number(value, what)
    if result < 0:
        raise ArgumentError(f"{what} must be at least 0.")
    return result


def within(value: float | None, size: int, what: str) -> float | None:
    """A coordinate checked against the photo's side of ``size`` pixels (0 to size - 1)."""
    if value is not None and value > size - 1:
        raise ArgumentError(f"{what} must be from 0 to {size - 1} on this photo.")
    return value


def choice(value: object, choices: Sequence[str], what: str) -> str:
    """One of ``choices`` (named in the message, which are the app's, not the caller's)."""
    if not isinstance(value, str) or value not in choices:
        raise ArgumentError(f"{what} must be one of: {', '.join(repr(c) for c in choices)}.")
    return value


def example_name(value: object, names: Collection[str], example: str) -> str:
    """The name of a bundled validation example (``example`` is one, shown as a hint)."""
    if value is None or value == "":
        raise ArgumentError(f"Name a validation example, e.g. {example!r} (the dropdown lists all {len(names)}).")
    if not isinstance(value, str):
        raise ArgumentError("The validation example must be given by its name, a string.")
    if len(value) > MAX_NAME_LENGTH or value not in names:
        raise ArgumentError(
            f"There is no validation example by that name; the {len(names)} names are those of the dropdown, "
            f"e.g. {example!r}."
        )
    return value
