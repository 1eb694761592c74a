"""genre-batch: genre classification and similar-song search for music catalogues."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("genre-batch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"


def code_version() -> str:
    """The version every artifact records as ``code_version``: the installed distribution's,
    else ``0+unknown`` (a source tree that was never installed)."""
    return __version__
