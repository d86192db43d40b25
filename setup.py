"""Build of the facade's optional C hot path (ruvector_lab/_hotpath.c); everything else is in pyproject.toml.

``optional=True``: where no C compiler or Python headers are found, set-up goes on and the facade runs its
Python path (the same checks and results, a few microseconds slower a query).
"""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ruvector_lab._hotpath",
            ["ruvector_lab/_hotpath.c"],
            include_dirs=[numpy.get_include()],
            optional=True,
        )
    ]
)
