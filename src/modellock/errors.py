"""User-facing errors: the CLI prints ``str(err)`` as one line and exits non-zero."""


class ModelLockError(Exception):
    """A problem with the user's input (file, field or value), reported without a traceback."""


class KeyFileError(ModelLockError):
    """A key file that cannot be read or is malformed."""


class WrongKeyError(ModelLockError):
    """A key whose fingerprint does not match the locked model."""


class DataError(ModelLockError):
    """A data source, image or manifest that cannot be used."""


class DataWarning(UserWarning):
    """Data that works but may not be what the user meant (the CLI prints it as one ``warning:`` line)."""


class ImageInputError(ModelLockError, TypeError):
    """Something given to a predictor that is not an image (nor a list of images)."""


class ImageError(DataError, ValueError):
    """An image that cannot be used: not an image, truncated or corrupt, too large, or of an unusable shape.

    Also a ``ValueError``, so code that caught the ``ValueError`` of image reading keeps working.
    """


class ImageTooLargeError(ImageError):
    """An image whose header gives more pixels than allowed (a decompression bomb is refused unread)."""


def one_line(message: str) -> str:
    """``message`` with control characters (line breaks, terminal escape sequences) written as Python escapes:
    an error line stays one line, and a file name or value in it cannot move the cursor or recolour a terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
