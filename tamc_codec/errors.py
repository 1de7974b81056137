"""Error types shared by the library and the CLI.

Every failure a user can cause (bad input, corrupt files, unknown names) raises a
subclass of :class:`TamcError`; the CLI prints its message on one line and exits
non-zero. Anything else escaping is a bug.
"""


class TamcError(Exception):
    """Base class for errors caused by input, files or configuration."""


class TamcInputError(TamcError, ValueError):
    """A user-supplied argument, image or data folder is unusable."""


class TamcFormatError(TamcError):
    """A .tamc file (or a coded layer inside it) is malformed, truncated or corrupt."""


class TamcModelError(TamcError):
    """A model is missing, incomplete, or does not match the file being decoded."""
