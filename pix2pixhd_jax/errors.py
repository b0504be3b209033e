"""Every error the project raises on purpose, one class per kind of failure.

`UserError` and its subclasses are the user's to fix (bad data, config, checkpoint, weights,
flags): the message names the file or setting, the offending value and the fix; the CLI
prints it without a traceback and exits with status 2. A training run stopped by a
non-finite loss exits with status 3 (`NonFiniteLossError`). The editor's HTTP layer answers
`ApiError` with its 4xx status.

This module imports nothing, so every other module, `models/` included, may import it.
"""


class UserError(ValueError):
    """The base of every error that is the user's to fix."""


class ConfigError(UserError):
    """A config file or a --config.key=value override that cannot be used."""


class DataError(UserError):
    """Bad input data: a missing, unreadable, mismatched or out-of-range file."""


class CheckpointError(UserError):
    """A workdir without the checkpoint asked for, or one that does not fit the config."""


class UnreadableCheckpointError(CheckpointError):
    """A checkpoint step that cannot be read (a file cut short, missing or overwritten); `step` and
    `path` say which. Training resumes from an older step instead; inference stops and names it."""

    def __init__(self, message: str, step=None, path=None):
        super().__init__(message)
        self.step = step
        self.path = path


class DistributedError(UserError):
    """A multi-host start that cannot work: flags, coordinator, processes that disagree."""


class InteropError(UserError):
    """A PyTorch state dict that does not fit the config."""


class VGGWeightsError(UserError):
    """Missing, unreadable or mismatched VGG19 weights; the message names the file and the fix."""


class VGGWeightsNotFoundError(VGGWeightsError, FileNotFoundError):
    """The VGG19 weights file does not exist."""


class InceptionWeightsError(UserError):
    """Missing, unreadable or mismatched FID Inception weights; the message names the file and the fix."""


class InceptionWeightsNotFoundError(InceptionWeightsError, FileNotFoundError):
    """The FID Inception weights file does not exist."""


class FeaturesError(UserError):
    """A clusters file or reference feature file that cannot be used."""


class SynthesisError(UserError):
    """Inputs to synthesis that do not fit the model (label ids, sizes, styles)."""


class EditError(UserError):
    """An edit of a scene that cannot be made (unknown instance, empty mask, bad class)."""


class ExportError(UserError):
    """An export that cannot be made as asked (size, platform, dtype, workdir)."""


class OutputError(UserError):
    """An output path that cannot be written: a file where a folder goes, a folder where a file
    goes, no permission."""


class NonFiniteLossError(RuntimeError):
    """A training step gave a non-finite loss or gradient norm; the run stopped before saving it."""


class ApiError(Exception):
    """A request the client must fix (status 4xx) with a message naming field, value and fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
