"""The one place zenmon's version is written (read by setuptools and by ``zenmon.__version__``)."""

__version__ = "0.1.0"
