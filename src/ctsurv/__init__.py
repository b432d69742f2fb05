"""ctsurv: overall-survival prediction for NSCLC from pretreatment CT.

Data flow, one module per stage::

    io -> preprocess (segment) -> embed -> models -> validate/train -> metrics/stats -> plots
"""

__version__ = "0.1.0"
