"""The ``endpoint`` section: where command audio goes after a wake word, and how.

`EndpointSettings` names the URL, the kind of server, the audio format, the token's source, the
CA bundle, the language, the timeout and the retries. `endpoint_url_parts` is the rule that audio
never crosses the network in clear: for the HTTP kinds https, or plain http only to this machine
(`is_loopback_host`); for ``wyoming`` (a Wyoming speech-to-text server) ``tls://``, plain
``tcp://`` only to this machine, or a ``unix://`` socket. The privacy gate applies the same rule
again when it connects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from agent.settings.schema import in_range, join_path, show
from kernels.errors import ConfigError

ENDPOINT_KINDS = ("http", "openai-transcription", "wyoming")
HTTP_SCHEMES = ("http", "https")
"""URL schemes of the ``http`` and ``openai-transcription`` kinds."""
WYOMING_SCHEMES = ("tcp", "tls", "unix")
"""URL schemes of the ``wyoming`` kind: plain TCP (to loopback only), TCP in TLS, a Unix socket."""
MAX_LANGUAGE_CHARS = 35
"""The longest ``language`` accepted (BCP 47 tags are shorter)."""


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a URL's host name) is this machine: localhost, 127.0.0.0/8 or ::1."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint_url_parts(url: str, where: str, shown: str, kind: str = "http") -> SplitResult:
    """The parts of an endpoint URL, refusing one that would send audio off this machine in clear.

    Parameters
    ----------
    url : str
        The URL.
    where : str
        The field, for messages (``endpoint.url``).
    shown : str
        How the URL appears in messages (the privacy gate shows it with credentials redacted).
    kind : str
        The endpoint's kind: ``wyoming`` takes ``tcp://``, ``tls://`` and ``unix://`` URLs, the
        other kinds ``https://`` and ``http://``.

    Raises
    ------
    ConfigError
        A scheme the kind does not speak, no host (or, for ``unix://``, no absolute socket path),
        a bad or missing port, credentials in the URL (``user:pass@``), or plain http or tcp to
        a host other than loopback.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as err:
        raise ConfigError(f"{where}: got {shown}, {err}") from None
    scheme = parts.scheme.lower()
    if kind == "wyoming":
        if scheme not in WYOMING_SCHEMES:
            raise ConfigError(
                f"{where}: got {shown}; kind wyoming expects tcp://HOST:PORT (to localhost "
                "only), tls://HOST:PORT or unix:///path/to/socket"
                + (" (http URLs are for the kinds http and openai-transcription)"
                   if scheme in HTTP_SCHEMES else "")
            )  # fmt: skip
    elif scheme not in HTTP_SCHEMES or not host:
        hint = (
            f" ({scheme}:// URLs are for kind wyoming, a Wyoming speech-to-text server)"
            if scheme in WYOMING_SCHEMES else ""
        )  # fmt: skip
        raise ConfigError(f"{where}: got {shown}, expected an https:// URL with a host{hint}")
    if parts.username is not None or parts.password is not None:
        fix = (
            "kind wyoming sends no credentials" if kind == "wyoming"
            else "put the token in endpoint.token_env or endpoint.token_file"
        )  # fmt: skip
        raise ConfigError(
            f"{where}: got {shown}; a user name or password in the URL is not allowed (it "
            f"would not be sent); {fix}"
        )
    if scheme == "http" and not is_loopback_host(host or ""):
        raise ConfigError(
            f"{where}: got {shown}; audio leaves this machine only over https "
            "(plain http is allowed only to localhost, 127.0.0.0/8 and ::1)"
        )
    if kind == "wyoming":
        _check_wyoming_url(parts, where, shown)
    return parts


def _check_wyoming_url(parts: SplitResult, where: str, shown: str) -> None:
    """Refuse a ``tcp://``, ``tls://`` or ``unix://`` URL that is incomplete or unsafe.

    Raises
    ------
    ConfigError
        A unix URL with a host or without an absolute path, a tcp or tls URL without a host or
        port or with a path, or plain tcp to a host other than loopback.
    """
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: got {shown}; a {scheme}:// URL takes no ?query or #fragment")
    if scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(
                f"{where}: got {shown}, expected unix:///absolute/path/to/socket (three slashes: "
                "no host, then the socket's absolute path)"
            )
        return
    if not parts.hostname or parts.port is None or parts.path not in ("", "/"):
        raise ConfigError(
            f"{where}: got {shown}, expected {scheme}://HOST:PORT (a host and a port, no path), "
            f"e.g. {scheme}://127.0.0.1:10300"
        )
    if scheme == "tcp" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"{where}: got {shown}; plain tcp:// is allowed only to localhost, 127.0.0.0/8 and "
            "::1 (audio leaves this machine only encrypted); use tls://HOST:PORT for a Wyoming "
            "server behind a TLS terminator, or unix:// for a local socket"
        )


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

    kind: Literal["http", "openai-transcription", "wyoming"] = "http"
    """``http``: a chunked POST of the audio while the user speaks; ``openai-transcription``: a
    multipart POST to a ``/v1/audio/transcriptions``-compatible server once the command ends;
    ``wyoming``: the Wyoming protocol's ``transcribe`` and audio events to a speech-to-text
    server (e.g. wyoming-faster-whisper), streamed while the user speaks."""
    url: str | None = None
    """``https://`` (``http://`` only to a loopback address); for ``wyoming``, ``tls://HOST:PORT``,
    ``tcp://HOST:PORT`` (loopback only) or ``unix:///path/to/socket``. None sends nothing."""
    format: Literal["wav", "pcm"] = "wav"
    """Audio format of ``http`` uploads: WAV, or raw 16-bit little-endian mono PCM at 16 kHz."""
    token_env: str | None = None
    """Environment variable holding the bearer token (HTTP kinds only: the Wyoming protocol has
    no authentication, so ``wyoming`` refuses a token rather than ignore it)."""
    token_file: str | None = None
    """File holding the bearer token (its first line)."""
    ca_file: str | None = None
    """PEM bundle of certificate authorities to trust instead of the system's (for ``https://``
    and ``tls://`` URLs)."""
    model: str = "whisper-1"
    """``model`` field of ``openai-transcription`` requests."""
    language: str | None = None
    """Language of the speech (e.g. ``en``), sent in the ``transcribe`` event of ``wyoming``
    uploads; None lets the server decide."""
    device_id: str | None = None
    """Sent in the metadata headers; None for the host name."""
    timeout_s: float = field(default=10.0, metadata=in_range(0.5, 300))
    """Connect and read timeout of each attempt."""
    retries: int = field(default=2, metadata=in_range(0, 10))
    """Further attempts after a failed one (with exponential backoff); then the upload is
    dropped and audited as failed."""

    def _validate(self, path: str) -> None:
        """Check the URL's scheme and host, the token sources and the language.

        Raises
        ------
        ConfigError
            A URL the kind does not take, credentials in the URL, plain http or tcp to a host
            other than loopback, two token sources, a token for ``wyoming``, or a language that
            is not a short tag for ``wyoming``.
        """
        if self.url is not None:
            endpoint_url_parts(
                self.url, join_path(path, "url"), show(without_credentials(self.url)), self.kind
            )
        if self.token_env is not None and self.token_file is not None:
            raise ConfigError(f"{path or 'endpoint'}: set token_env or token_file, not both")
        for key in ("token_env", "token_file", "ca_file", "language", "device_id"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise ConfigError(
                    f"{join_path(path, key)}: got {show(value)}, expected text or null"
                )
        if self.kind == "wyoming":
            self._validate_wyoming(path)
        elif self.language is not None:
            raise ConfigError(
                f"{join_path(path, 'language')}: got {show(self.language)}; language applies "
                "only to kind wyoming (set it to null)"
            )

    def _validate_wyoming(self, path: str) -> None:
        """Refuse a token (Wyoming has no authentication) and a language that is not a tag."""
        for key in ("token_env", "token_file"):
            value = getattr(self, key)
            if value is not None:
                raise ConfigError(
                    f"{join_path(path, key)}: got {show(value)}; kind wyoming sends no token "
                    "(the Wyoming protocol has no authentication), expected null"
                )
        language = self.language
        if language is not None and (
            len(language) > MAX_LANGUAGE_CHARS
            or not all(char.isascii() and (char.isalnum() or char in "-_") for char in language)
        ):
            raise ConfigError(
                f"{join_path(path, 'language')}: got {show(language)}, expected a language tag "
                f"such as en or pt-BR (letters, digits, - and _; at most {MAX_LANGUAGE_CHARS} "
                "characters) or null"
            )
