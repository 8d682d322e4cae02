"""Loading pretrained encoders by hub name or local path, failing fast when offline."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from tmc_lightning import weights
from tmc_lightning.errors import EncoderUnavailableError

T = TypeVar("T")

__all__ = ["EncoderUnavailableError", "hub_reachable", "load_hf"]


def hub_reachable(timeout: float = 3.0) -> bool:
    """True if the Hugging Face endpoint accepts a TCP connection within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


# How a user points the text encoder (and its tokenizer) at a local folder.
TEXT_KEY = "text_encoder=local text_encoder.path=DIR (or +model.text.name=DIR)"


def load_hf(loader: Callable[..., T], name: str, what: str, key: str = TEXT_KEY) -> T:
    """Call ``loader(name, local_files_only=...)``; turn failures into one actionable error.

    ``what`` names the thing ("text encoder"), ``key`` says how to point it at a folder DIR.
    A local directory never touches the network; a hub name is tried online only when the
    hub answers, so an offline machine fails in seconds instead of retrying for a minute.
    """
    name = weights.resolve(name)  # weights:<name> -> the folder tmc-weights fetched
    local = Path(name).expanduser().is_dir()
    offline = local or not hub_reachable()
    try:
        return loader(str(Path(name).expanduser()) if local else name, local_files_only=offline)
    except (OSError, ValueError) as err:
        if "trust_remote_code" in str(err):
            raise EncoderUnavailableError(
                f"The {what} {name!r} ships its own model code, which runs only when you allow it: "
                "set text_encoder.trust_remote_code=true (or +model.text.trust_remote_code=true) "
                "if you trust its source; it executes that code on this machine"
            ) from None
        raise EncoderUnavailableError(offline_message(name, what, key, local, err)) from None


def offline_message(name: str, what: str, key: str, local: bool, err: BaseException) -> str:
    if local:
        return (
            f"Could not load the {what} from local directory {name!r}: {err}. "
            "The directory must hold config.json, the weights and the tokenizer files, "
            "e.g. as written by `save_pretrained(DIR)` or `huggingface-cli download NAME --local-dir DIR`."
        )
    return (
        f"Could not load the {what} {name!r}: the Hugging Face hub is unreachable and "
        "the files are not in the local cache. Fix it one of three ways: "
        f"(1) on a machine with internet run `huggingface-cli download {name} --local-dir DIR`, copy "
        f"DIR here and select it with {key}; (2) fill the cache (~/.cache/huggingface) and set "
        "HF_HUB_OFFLINE=1; (3) train the encoders from random weights with model.pretrained=false "
        "(the config must still be found), or drop the text_encoder=... choice and use "
        "model.preset=small, which needs no download."
    )
