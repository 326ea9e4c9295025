"""Talking to the Hugging Face Hub: repo ids, the token, one-line errors without the token, and downloads.

The endpoint is `HF_ENDPOINT` (read by huggingface_hub), the token `HF_TOKEN` or the token cache written
by `hf auth login`. The token is never printed: every error message goes through `scrub`.
"""

from __future__ import annotations

import re
from pathlib import Path

from mmkit.errors import UserError

TOKEN_SHAPE = re.compile(rb"hf_[A-Za-z0-9]{30,}")
REPO_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


def validate_repo_id(repo_id: str) -> str:
    """`owner/name` with the Hub's characters; a one-line UserError otherwise."""
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id or repo_id.endswith(".git"):
        raise UserError(
            f"invalid Hub repo id {repo_id!r}: use owner/name with letters, digits, '-', '_', '.' "
            "(e.g. my-user/sentiment-minilm-lora)"
        )
    return repo_id


def hub_token() -> str:
    """The token from HF_TOKEN or the HF token cache; a UserError (without any token text) when none."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN=hf_... or run `hf auth login` (a token with write access)")
    return token


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def scrub(text: str, token: str | None) -> str:
    text = " ".join(str(text).split())
    if token:
        text = text.replace(token, "***")
    return TOKEN_SHAPE.sub(b"hf_***", text.encode()).decode()


def hub_error(err: Exception, action: str, token: str | None = None) -> UserError:
    """A one-line UserError for a failed Hub call (connection, auth, 4xx/5xx), without the token."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    where = endpoint()
    if isinstance(err, httpx2.ConnectError):
        return UserError(f"{action}: cannot connect to the Hub at {where} ({scrub(err, token)[:120]}); check the network or HF_ENDPOINT")
    if isinstance(err, httpx2.TimeoutException):
        return UserError(f"{action}: the Hub at {where} did not answer in time; try again later")
    if isinstance(err, RevisionNotFoundError):
        return UserError(f"{action}: revision not found ({scrub(err, token).split(' Revision')[0][:160]}); check --revision")
    if isinstance(err, RepositoryNotFoundError):
        return UserError(f"{action}: repository not found (or private without a token with access); check the repo id and HF_TOKEN")
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        server_message = getattr(err, "server_message", None) or ""
        if status in (401, 403):
            return UserError(f"{action}: the Hub refused the token ({status}); use a token with write access to this repo")
        detail = f": {scrub(server_message, token)[:160]}" if server_message else ""
        return UserError(f"{action}: the Hub at {where} answered HTTP {status}{detail}; nothing was published by this call, try again later")
    return UserError(f"{action}: {type(err).__name__}: {scrub(err, token)[:200]}")



def download_run(repo_id: str, revision: str | None = None) -> Path:
    """snapshot_download of the allow-listed files of a pushed run (nothing else is fetched)."""
    from huggingface_hub import snapshot_download

    from mmkit.hub.files import DOWNLOAD_PATTERNS
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled, RevisionNotFoundError

    validate_repo_id(repo_id)
    try:
        local = snapshot_download(repo_id, revision=revision, allow_patterns=DOWNLOAD_PATTERNS)
    except RevisionNotFoundError:
        raise UserError(f"{repo_id} has no revision {revision!r} (branch, tag or commit); check --revision") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        cause = err.__cause__
        if cause is not None and not isinstance(cause, OfflineModeIsEnabled):
            raise hub_error(cause, f"could not download {repo_id} from the Hub") from None
        raise UserError(
            f"could not download {repo_id}: the Hub is unreachable or HF_HUB_OFFLINE=1 and it is not in the local cache"
        ) from None
    except Exception as err:  # noqa: BLE001 - network, auth, missing repo or revision: one line
        raise hub_error(err, f"could not download {repo_id} from the Hub") from None
    return Path(local)
