"""Pretrained-weight downloads that fail fast and clearly when there is no network."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

OFFLINE_HINT = "Train from scratch instead with encoder_weights=None (on the command line: --encoder-weights none)."


def _is_offline_flag_set() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}


def check_reachable(url: str, what: str, timeout: float = 3.0) -> None:
    """Raise ``RuntimeError`` within ``timeout`` seconds when ``url``'s host cannot be reached.

    Download libraries retry for a minute or more before giving up offline; one TCP
    connect tells us the same thing in a few seconds.
    """
    if _is_offline_flag_set():
        raise RuntimeError(f"cannot download {what}: HF_HUB_OFFLINE is set. {OFFLINE_HINT}")
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise RuntimeError(
            f"cannot download {what}: {parsed.hostname}:{port} is unreachable ({exc}). {OFFLINE_HINT}"
        ) from None


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


TORCHVISION_URL = "https://download.pytorch.org"


def check_weights_source(encoder_weights: str | None, source: str, what: str) -> None:
    """Check the network only when pretrained weights were asked for."""
    if encoder_weights is None:
        return
    check_reachable(source, f"{encoder_weights} weights for {what}")
