"""TLS for the gateway's own listener (`server.tls_cert` / `server.tls_key`, or --tls-cert/--tls-key).

TLS 1.2 at least, the ssl module's default ciphers. ALPN offers only `http/1.1`: the server speaks
HTTP/1.1, so a client that would prefer HTTP/2 (browsers, httpx with http2, curl) settles on 1.1 in
the handshake instead of failing afterwards.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TLSError(ValueError):
    """A certificate or key that cannot be used, in one line."""


def server_tls_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    for path, what in ((cert, "tls_cert"), (key, "tls_key")):
        if not Path(path).is_file():
            raise TLSError(f"{what}: {path}: no such file")
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise TLSError(f"tls_cert / tls_key: cannot load the certificate and key ({exc.reason or exc})") from None
    except OSError as exc:
        raise TLSError(f"tls_cert / tls_key: {exc.strerror or exc}") from None
    return context
