"""The ``endpoint`` section: where command audio goes after a wake word, and how.

`EndpointSettings` names the URL, the kind of server, the audio format, the token's source, the
CA bundle, the timeout and the retries. `endpoint_url_parts` is the rule that audio never crosses
the network in clear: https, or plain http only to this machine (`is_loopback_host`). The privacy
gate applies the same rule again when it connects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from agent.settings.schema import in_range, join_path, show
from kernels.errors import ConfigError

ENDPOINT_KINDS = ("http", "openai-transcription")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a URL's host name) is this machine: localhost, 127.0.0.0/8 or ::1."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint_url_parts(url: str, where: str, shown: str) -> SplitResult:
    """The parts of an endpoint URL, refusing one that would send audio off this machine in clear.

    Parameters
    ----------
    url : str
        The URL.
    where : str
        The field, for messages (``endpoint.url``).
    shown : str
        How the URL appears in messages (the privacy gate shows it with credentials redacted).

    Raises
    ------
    ConfigError
        Not an http(s) URL with a host, a bad port, credentials in the URL (``user:pass@``), or
        plain http to a host other than loopback.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as err:
        raise ConfigError(f"{where}: got {shown}, {err}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"{where}: got {shown}, expected an https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{where}: got {shown}; a user name or password in the URL is not allowed (it "
            "would not be sent); put the token in endpoint.token_env or endpoint.token_file"
        )
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigError(
            f"{where}: got {shown}; audio leaves this machine only over https "
            "(plain http is allowed only to localhost, 127.0.0.0/8 and ::1)"
        )
    return parts


def without_credentials(url: str) -> str:
    """``url`` with any user name and password replaced by ``***``, for messages."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    end = min(ends, default=len(rest))
    _, at, host = rest[:end].rpartition("@")
    return f"{scheme}://***@{host}{rest[end:]}" if at else url


@dataclass(frozen=True)
class EndpointSettings:
    """Where command audio goes after a wake word; no ``url`` means nowhere."""

    kind: Literal["http", "openai-transcription"] = "http"
    """``http``: a chunked POST of the audio while the user speaks; ``openai-transcription``: a
    multipart POST to a ``/v1/audio/transcriptions``-compatible server once the command ends."""
    url: str | None = None
    """``https://`` (``http://`` only to a loopback address); None sends nothing."""
    format: Literal["wav", "pcm"] = "wav"
    """Audio format of ``http`` uploads: WAV, or raw 16-bit little-endian mono PCM at 16 kHz."""
    token_env: str | None = None
    """Environment variable holding the bearer token."""
    token_file: str | None = None
    """File holding the bearer token (its first line)."""
    ca_file: str | None = None
    """PEM bundle of certificate authorities to trust instead of the system's."""
    model: str = "whisper-1"
    """``model`` field of ``openai-transcription`` requests."""
    device_id: str | None = None
    """Sent in the metadata headers; None for the host name."""
    timeout_s: float = field(default=10.0, metadata=in_range(0.5, 300))
    """Connect and read timeout of each attempt."""
    retries: int = field(default=2, metadata=in_range(0, 10))
    """Further attempts after a failed one (with exponential backoff); then the upload is
    dropped and audited as failed."""

    def _validate(self, path: str) -> None:
        """Check the URL's scheme and host, and that at most one token source is set.

        Raises
        ------
        ConfigError
            Not an http(s) URL, credentials in the URL, plain http to a host other than
            loopback, or two token sources.
        """
        if self.url is not None:
            endpoint_url_parts(
                self.url, join_path(path, "url"), show(without_credentials(self.url))
            )
        if self.token_env is not None and self.token_file is not None:
            raise ConfigError(f"{path or 'endpoint'}: set token_env or token_file, not both")
        for key in ("token_env", "token_file", "ca_file", "device_id"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise ConfigError(
                    f"{join_path(path, key)}: got {show(value)}, expected text or null"
                )
