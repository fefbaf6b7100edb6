"""Errors the source raises; every message names what is wrong and where."""


class SourceError(Exception):
    """MLflow could not be read."""


class SourceUnreachable(SourceError):
    """The server did not answer (connection refused, DNS, timeouts, 5xx after retries)."""


class SourceAuthError(SourceError):
    """The server answered 401/403."""


class MlflowApiError(SourceError):
    """The server answered with an MLflow error (4xx with an error_code)."""

    def __init__(self, message: str, error_code: str = "", status: int = 0):
        super().__init__(message)
        self.error_code = error_code
        self.status = status

    @property
    def endpoint_missing(self) -> bool:
        """The server has no such API (an older MLflow): not an error of this request."""
        return self.status == 404 or self.error_code in ("ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED")
