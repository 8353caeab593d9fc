"""The error every layer raises; the WSGI app turns it into docs/api.md's error body."""


class ApiError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


def bad_request(message):
    return ApiError(400, "bad_request", message)


def not_found(message):
    return ApiError(404, "not_found", message)
