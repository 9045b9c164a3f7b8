"""Exception types. Every user-facing failure raises one of these with a message that names the problem,
so the CLI can print it without a traceback from deep inside a library."""


class AffectError(ValueError):
    """Base class: a problem the user can fix (bad input, missing file, unknown name)."""


class MediaError(AffectError):
    """A media file or buffer cannot be decoded, is empty, or exceeds a configured limit."""


class ConfigError(AffectError):
    """An unknown name, an inconsistent config, or a checkpoint folder that is missing files."""


class PlaceholderMismatchError(AffectError):
    """The number of placeholder tokens differs from the number of features a tower produced."""


class WeightsNotFoundError(AffectError):
    """A preset names weights that are not on this disk (we never download)."""


class ScoringInputError(AffectError):
    """A gold/prediction/lexicon file is malformed; the message names file, row and column."""
