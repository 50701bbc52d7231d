"""lrrt service side: the HTTP API, the CLI and the Python client. Never imports TensorFlow or Keras."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: The installed distribution's version: pyproject.toml is its one definition.
    __version__ = version("lrrt")
except PackageNotFoundError:  # run from a source tree that was never `pip install`ed
    __version__ = "0+unknown"
