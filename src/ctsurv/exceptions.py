"""Exceptions raised by ctsurv.

Every exception subclasses :class:`CtsurvError`, itself a :class:`ValueError`, so callers can
catch ctsurv problems as bad input. Messages name the patient (and series) and the reason.
"""

from __future__ import annotations


class CtsurvError(ValueError):
    """Base class of every error ctsurv raises about its input."""


class DiskFullError(CtsurvError):
    """No space left on the device while writing an artifact; nothing partial is kept."""


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


class PhantomError(CtsurvError):
    """Phantom parameters are invalid or the tumour cannot be placed inside the lung. Raised by ``ctsurv.synthetic``."""


class StudyError(CtsurvError):
    """A study file is malformed or its configurations cannot share folds. Raised by ``ctsurv.study``."""


class HarmonizationError(CtsurvError):
    """ComBat/RKN cannot be fitted or applied to the given data. Raised by ``ctsurv.radiomics.harmonize``."""


class SelectionError(CtsurvError):
    """Feature selection/reduction cannot be fitted or applied. Raised by ``ctsurv.radiomics.select``."""


class RadiomicsError(CtsurvError):
    """Radiomics feature extraction failed (missing package, empty region...). Raised by ``ctsurv.radiomics.features``."""


class ModelError(CtsurvError):
    """A radiomics/clinical model cannot be fitted or applied to the given data. Raised by ``ctsurv.radiomics.models``."""


class OnnxMismatchError(ModelMismatchError):
    """The ONNX export of a trunk does not reproduce PyTorch within tolerance. Raised by ``ctsurv.embed.engine``."""


class EmbedError(CtsurvError):
    """Bad input or configuration for the slice-embedding stage. Raised by ``ctsurv.embed.backbones``."""


class ModelInputError(CtsurvError):
    """Tensors given to a model or loss have the wrong shape, dtype or values. Raised by ``ctsurv.models``."""


class Model3DError(CtsurvError):
    """Bad input or configuration for a 3D baseline. Raised by ``ctsurv.models3d``."""


class ComplexityError(CtsurvError):
    """A model cannot be measured with the given inputs. Raised by ``ctsurv.complexity``."""


class TimeGridError(CtsurvError):
    """A horizon, bin width or survival-column set does not form a valid time grid. Raised by ``ctsurv.types.TimeGrid``."""
