"""The one error type for bad input data.

Its message names the file, the offending value and the fix, so that a user
never meets a shape error deep inside the model instead.
"""


from pix2pixhd_jax.errors import UserError


class DataError(UserError):
    """Bad input data: a missing, unreadable, mismatched or out-of-range file."""
