"""Build declaration for zenmon's one private extension, ``zenmon._core``."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("ZENMON_DEBUG") == "1"

macros = [("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []
compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]

extensions = [
    Extension(
        "zenmon._core",
        ["zenmon/_core.pyx"],
        define_macros=macros + ([("ZENMON_DEBUG", "1")] if DEBUG else []),
        extra_compile_args=compile_args,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "embedsignature": True,
            "linetrace": DEBUG,
        },
        compile_time_env={"ZENMON_DEBUG": DEBUG},
        annotate=DEBUG,
    ),
)
