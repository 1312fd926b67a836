"""The picture formats the app answers with (no heavy imports: the HTTP layer reads it at import)."""
from __future__ import annotations

MIME_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
