"""Errors jdps raises: each message says what is wrong and how to fix it."""


class JdpsError(Exception):
    """Base class of every jdps error."""


class InputError(JdpsError, ValueError):
    """Bad input: a shape, dtype, range or value the function cannot use."""


class MissingDatasetError(JdpsError, FileNotFoundError):
    """A dataset is not installed here; the message names the one command that installs it."""


class CheckpointError(JdpsError, RuntimeError):
    """A checkpoint cannot be read (missing, corrupt or from another run)."""


class TrainingDivergedError(JdpsError, FloatingPointError):
    """A loss or a sampled variable became NaN or Inf; the message names the step and the fix."""


class SamplerDivergedError(TrainingDivergedError):
    """The parameters or weights of a sampling chain became NaN or Inf."""
