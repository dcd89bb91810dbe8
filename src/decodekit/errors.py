"""Errors a user can cause and fix: the CLI prints their message on one line and exits with code 2."""


class UserError(ValueError):
    """Bad input from the user (prompt, model name, parameter, file). The message says what to change."""


class ParameterError(UserError):
    """A parameter out of range. The message names it as the Python API does (`max_new_tokens`); an interface
    shows it under its own name (the CLI as `--max-new-tokens`) with `message_for`."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter} {message}")
        self.parameter = parameter
        self.detail = message

    def message_for(self, name: str) -> str:
        return f"{name} {self.detail}"
