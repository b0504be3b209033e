"""The one error type for bad input data.

Its message names the file, the offending value and the fix, so that a user
never meets a shape error deep inside the model instead.
"""


class DataError(ValueError):
    """Bad input data: a missing, unreadable, mismatched or out-of-range file."""
