"""Credentials inside values that are otherwise fine to show: URLs with a user's password or a
signed query (an Azure SAS), connection strings, private keys. Such a value is never printed,
written into a manifest or put on a label; a URL is shown without them."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# Query parameters that sign or authorise a URL: Azure SAS (sig, se, sp, sv...), tokens, keys.
SIGNING_PARAMETERS = re.compile(
    r"(?:^|&)(sig|signature|x-amz-signature|x-goog-signature|token|access_token|key|apikey|api_key|password|secret)=",
    re.I,
)
CREDENTIAL_TEXT = re.compile(
    r"(AccountKey=|SharedAccessSignature=|SharedAccessKey=|Password=|Pwd=|-----BEGIN [A-Z ]*PRIVATE KEY-----)", re.I
)
URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def without_credentials(url: str) -> str:
    """A URL fit to show: `https://user:token@host/x.git?sig=...` -> `https://host/x.git`."""
    if URL.match(url):
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    return url.split("@", 1)[-1] if "@" in url.split(":", 1)[0] else url  # scp-like: git@host:team/x.git


def carries_credentials(value: str) -> bool:
    """Whether a value holds a credential: a URL with a password or a signed query, a
    connection string with a key or password, a private key."""
    if CREDENTIAL_TEXT.search(value):
        return True
    for candidate in re.findall(r"[a-z][a-z0-9+.-]*://\S+", value, re.I):
        parts = urlsplit(candidate)
        if parts.password or SIGNING_PARAMETERS.search(parts.query):
            return True
    return False
