"""Input checks shared by the metric and statistics layers: survival data and per-patient vectors.

Layer 0: imports only numpy and :mod:`ctsurv.exceptions`. Every check returns the converted
array or raises (:class:`~ctsurv.exceptions.MetricError` unless told otherwise), never coerces
or clamps silently. Messages say what was expected and name the offending rows, in one style::

    time must be finite and >= 0; bad rows [1, 3] (values [nan, -1.0]): time of patient at
    index 1 is nan; expected finite and >= 0 (time[1] = nan is not finite)

that is: the expectation, the first :data:`MAX_ROWS` bad rows with their values, then the first
offending row described in words and as ``name[i] = value``.
"""

from __future__ import annotations

import numpy as np

from ctsurv.exceptions import CtsurvError, MetricError

__all__ = ["MAX_ROWS", "bad_rows_message", "check_length", "check_survival", "check_vector"]

#: At most this many offending rows are listed in a message.
MAX_ROWS = 10

_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def bad_rows_message(name: str, raw: np.ndarray, values: np.ndarray, bad: np.ndarray, *,
                     expected: str, reason: str, kind: str | None = None, what: str = "",
                     row: str = "patient") -> str:
    """The message for entries ``bad`` of the array ``name`` that are not ``expected``.

    Parameters
    ----------
    name : str
        Name of the argument, e.g. ``"time"``.
    raw, values : ndarray, shape = (n,)
        The array as given (its entries are listed) and as float64 (used in ``name[i] = v``).
    bad : ndarray of int
        Indices of the offending entries, ascending; at least one.
    expected : str
        What every entry should be, e.g. ``"finite and >= 0"``.
    reason : str
        Why the first offending entry fails, e.g. ``"not finite"``.
    kind : str, optional
        The first offending entry in a word (``"negative"``); default: its value.
    what : str
        Prefix naming the data set, e.g. ``"training"``.
    row : str
        What one entry is (``"patient"``, ``"entry"``).
    """
    full = f"{what} {name}" if what else name
    shown = bad[:MAX_ROWS]
    more = f" and {bad.size - MAX_ROWS} more" if bad.size > MAX_ROWS else ""
    i = int(bad[0])
    if kind is None:
        first = raw[i:i + 1].tolist()[0]
        kind = repr(first) if isinstance(first, str) else str(first)
    return (f"{full} must be {expected}; bad rows {shown.tolist()}{more} "
            f"(values {raw[shown].tolist()}): {full} of {row} at index {i} is {kind}; "
            f"expected {expected} ({full}[{i}] = {float(values[i])} is {reason})")


def check_survival(time, event, *, what: str = "", min_n: int = 1,
                   error: type[CtsurvError] = MetricError) -> tuple[np.ndarray, np.ndarray]:
    """Check right-censored survival data; return ``time`` as float64 and ``event`` as bool.

    Parameters
    ----------
    time : array-like, shape = (n_patients,)
        Event or censoring times: numeric, finite and >= 0.
    event : array-like, shape = (n_patients,)
        1 (or True) for an observed event, 0 (or False) for a censoring. Any other value,
        NaN included, is refused; it *does not accept* labels such as ``"dead"``.
    what : str
        Names the data set in messages (``"training"`` gives "training time must be ...").
    min_n : int
        Fewest patients accepted (2 for concordance-type metrics).
    error : type
        The :class:`~ctsurv.exceptions.CtsurvError` subclass to raise.

    Returns
    -------
    time : ndarray of float64, shape = (n_patients,)
    event : ndarray of bool, shape = (n_patients,)

    Raises
    ------
    MetricError
        (or ``error``) Not 1-D, different lengths, fewer than ``min_n`` patients, non-numeric,
        NaN / infinite / negative times, events other than 0/1. Each message names the bad rows.
    """
    label = f"{what} " if what else ""
    time = np.asarray(time)
    event = np.asarray(event)
    if time.ndim != 1 or event.ndim != 1:
        raise error(f"{label}time and event must be 1-D (one entry per patient), got shapes "
                    f"{time.shape} and {event.shape}")
    if time.shape != event.shape:
        raise error(f"{label}time and event must have one entry per patient each, but have "
                    f"different lengths (lengths differ: {time.shape[0]} vs {event.shape[0]})")
    n = time.shape[0]
    if n < min_n:
        need = _WORDS.get(min_n, str(min_n))
        raise error(f"{label}survival data need at least {need} patient{'s' * (min_n != 1)}, "
                    f"got {n}")
    try:
        t = time.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise error(f"{label}time must be numeric ({exc})") from None
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
    if bad.size:
        finite = bool(np.isfinite(t[bad[0]]))
        raise error(bad_rows_message(
            "time", time, t, bad, expected="finite and >= 0", what=what,
            reason="negative" if finite else "not finite", kind="negative" if finite else None))
    if event.dtype == np.bool_:
        return t, event
    try:
        ev = event.astype(np.float64)
    except (TypeError, ValueError):
        raise error(f"{label}event must be 0 or 1 (or bool), got dtype {event.dtype}") from None
    bad = np.flatnonzero((ev != 0) & (ev != 1))
    if bad.size:
        raise error(bad_rows_message("event", event, ev, bad, expected="0 or 1",
                                     reason="not 0/1", what=what))
    return t, ev == 1


def check_length(x, n: int, name: str, *, error: type[CtsurvError] = MetricError) -> np.ndarray:
    """Check that ``x`` is 1-D with one entry per patient (``n``, as time and event); return it.

    Raises
    ------
    MetricError
        (or ``error``) Wrong number of dimensions or entries.
    """
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise error(f"{name} must have shape ({n},) to match time and event, got shape "
                    f"{arr.shape}")
    if arr.shape[0] != n:
        raise error(f"{name} must have shape ({n},) to match time and event, got shape "
                    f"{arr.shape}: {name} has {arr.shape[0]} entries but time/event have {n}")
    return arr


def check_vector(x, name: str, *, n: int | None = None, row: str = "patient",
                 error: type[CtsurvError] = MetricError) -> np.ndarray:
    """Check a 1-D, non-empty, finite numeric vector; return it as float64.

    Parameters
    ----------
    x : array-like, shape = (n,)
    name : str
        Argument name used in messages.
    n : int, optional
        Required length (the number of patients of ``time``/``event``), see :func:`check_length`.
    row : str
        What one entry is, in messages (``"patient"``, ``"entry"``).
    error : type
        The :class:`~ctsurv.exceptions.CtsurvError` subclass to raise.

    Raises
    ------
    MetricError
        (or ``error``) Not 1-D, wrong length, empty, non-numeric, NaN or infinite entries.
    """
    if n is not None:
        arr = check_length(x, n, name, error=error)
    else:
        arr = np.asarray(x)
        if arr.ndim != 1:
            raise error(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise error(f"{name} is empty; expected at least one value")
    try:
        v = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} must be numeric ({exc})") from None
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise error(bad_rows_message(name, arr, v, bad, expected="finite", reason="not finite",
                                     row=row))
    return v
