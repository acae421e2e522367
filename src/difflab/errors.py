"""One error type for everything a user can get wrong; the CLI prints it as one line and exits 2."""


class DifflabError(Exception):
    """A problem with the user's input (file, tensor, label, option), stated in one line."""
