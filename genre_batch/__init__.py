"""genre-batch: genre classification and similar-song search for music catalogues."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("genre-batch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"
