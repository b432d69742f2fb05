"""Exceptions raised by ctsurv.

Every exception subclasses :class:`CtsurvError`, itself a :class:`ValueError`, so callers can
catch ctsurv problems as bad input. Messages name the patient (and series) and the reason.
"""

from __future__ import annotations


class CtsurvError(ValueError):
    """Base class of every error ctsurv raises about its input."""


class DicomSeriesError(CtsurvError):
    """A DICOM folder holds no usable CT series, or the series is broken."""


class GeometryError(CtsurvError):
    """Slice geometry is unusable: gaps, duplicates, tilt, mixed spacing/orientation."""


class RoiError(CtsurvError):
    """An RTSTRUCT/SEG region is missing or cannot be rasterised."""


class SegmentationError(CtsurvError):
    """The lung mask could not be computed (e.g. no lungs found)."""


class CohortError(CtsurvError):
    """Bad rows in a clinical table or a mismatch between table and images."""


class MetricError(CtsurvError):
    """A metric cannot be computed from the given input."""


class NoComparablePairError(MetricError):
    """No pair of patients is comparable, so a concordance index is undefined."""


class ModelMismatchError(CtsurvError):
    """A saved model does not match the preprocessing or backbone it is asked to serve."""


class WeightsNotFoundError(CtsurvError):
    """Pretrained weights were asked for but are not available offline."""
