"""The server's errors as OpenAI's API shapes them: `{"error": {"message", "type", "param", "code"}}`.

Every refusal is an `APIError` with an HTTP status; the app turns it, and any unexpected exception (a 500
whose message says nothing of the input or the code), into that JSON body. No traceback reaches a client.
"""

from __future__ import annotations

from types import MappingProxyType

ERROR_TYPES = MappingProxyType({
    400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
    405: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
    429: "rate_limit_error", 500: "server_error", 503: "server_error", 504: "timeout_error",
})


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
