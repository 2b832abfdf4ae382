"""Build declaration for zenmon's one private extension, ``zenmon._core``.

Release builds (the default) compile at -O3 without bounds or negative-index checks
and link the extension stripped (``-s``). ``ZENMON_DEBUG=1`` at build time makes a
debug build: -O0 -g, unstripped, ``boundscheck`` and ``wraparound`` on, line tracing,
an annotated HTML next to the ``.pyx``, and the compile-time constant
``ZENMON_DEBUG`` (plus the C macro of the same name) set for the core's own checks.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("ZENMON_DEBUG") == "1"

macros = [("CYTHON_TRACE_NOGIL", "1"), ("ZENMON_DEBUG", "1")] if DEBUG else []
compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]
link_args = [] if DEBUG else ["-s"]

extensions = [
    Extension(
        "zenmon._core",
        ["zenmon/_core.pyx"],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "embedsignature": True,
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "linetrace": DEBUG,
        },
        compile_time_env={"ZENMON_DEBUG": DEBUG},
        annotate=DEBUG,
    ),
)
