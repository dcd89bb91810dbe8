"""Errors a user can cause and fix: the CLI prints their message on one line and exits with code 2."""


class UserError(ValueError):
    """Bad input from the user (prompt, model name, parameter, file). The message says what to change."""
