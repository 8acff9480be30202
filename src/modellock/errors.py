"""User-facing errors: the CLI prints ``str(err)`` as one line and exits non-zero."""


class ModelLockError(Exception):
    """A problem with the user's input (file, field or value), reported without a traceback."""


class KeyFileError(ModelLockError):
    """A key file that cannot be read or is malformed."""


class WrongKeyError(ModelLockError):
    """A key whose fingerprint does not match the locked model."""


class DataError(ModelLockError):
    """A data source, image or manifest that cannot be used."""
