"""Checking ``chat.send`` attachments against the gateway's ``hello-ok.policy.attachments``
(``maxBytes``, ``maxImageBytes``) before anything is sent: a too-large attachment is a
:class:`~gwclient.UsageError` naming the limit, not a refusal after uploading megabytes.

An attachment's size is its ``sizeBytes`` when given, else the decoded size of its
base64 ``content`` (a ``data:`` URL or plain base64).  Images (``type: "image"`` or an
``image/*`` ``mimeType``) are held to ``maxImageBytes``, the rest to ``maxBytes``.  A
gateway that announces no policy (older releases) is not checked here.
"""

from __future__ import annotations

from typing import Any

from .._errors import UsageError

__all__ = ["check_attachments"]


def _size(item: dict[str, Any]) -> int | None:
    declared = item.get("sizeBytes")
    if isinstance(declared, (int, float)) and not isinstance(declared, bool) and declared >= 0:
        return int(declared)
    content = item.get("content")
    if not isinstance(content, str):
        return None
    if content.startswith("data:"):
        content = content.partition(",")[2]
    text = content.strip()
    return max(0, len(text) * 3 // 4 - text[-2:].count("="))


def _is_image(item: dict[str, Any]) -> bool:
    mime = item.get("mimeType")
    return item.get("type") == "image" or (isinstance(mime, str) and mime.lower().startswith("image/"))


def check_attachments(policy: dict[str, int] | None, attachments: Any) -> None:
    """Raise :class:`UsageError` when an attachment exceeds ``policy``."""
    if not policy or not isinstance(attachments, list):
        return
    for index, item in enumerate(attachments):
        if not isinstance(item, dict):
            continue
        size = _size(item)
        if size is None:
            continue
        key = "maxImageBytes" if _is_image(item) else "maxBytes"
        limit = policy.get(key) or policy.get("maxBytes")
        if limit is not None and size > limit:
            name = item.get("fileName") if isinstance(item.get("fileName"), str) else f"#{index + 1}"
            raise UsageError(f"attachment {name} is {size} bytes, over the gateway's "
                             f"policy.attachments.{key if policy.get(key) else 'maxBytes'} of {limit} bytes")
