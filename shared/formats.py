"""The picture formats the app answers with (no heavy imports: the HTTP layer reads it at import)."""
from __future__ import annotations

MIME_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}


class Base64Text:
    """Base64 text (ASCII bytes) that a JSON answer carries as a string: ``json_response`` writes
    the bytes straight into the body, so a large picture is not also held as a str, its JSON
    copy and their UTF-8 encoding (4 copies of the base64 at once before)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __str__(self) -> str:
        return self.data.decode("ascii")
