"""The base of every error that is the user's to fix (bad data, config, checkpoint, weights).

Its message names the file or setting, the offending value and the fix; the CLI
prints it without a traceback and exits with status 2.
"""


class UserError(ValueError):
    pass
