"""The URL gate of url registration: ``trusted_url_regex`` is matched against a normalised URL, and against every
redirect hop (the download follows redirects itself, see ``mlnode.tasks``), and ``file://`` URLs are confined to
configured folders.

Normalisation (RFC 3986 section 6.2.2, plus what a regex author assumes):

* the scheme and host are lowercased, a trailing dot of the host dropped and the scheme's default port removed;
* a URL with userinfo (``user@host``), a backslash, whitespace or a control character is refused outright;
* in the path, percent-escapes of unreserved characters are decoded (``%2e`` -> ``.``, ``%41`` -> ``A``), the rest
  uppercased, and dot segments resolved (``/a/../b`` -> ``/b``), so ``/allowed/../x`` is checked as ``/x``;
* the fragment is dropped (it is never sent).

The download then fetches exactly the normalised URL, so what was checked is what is fetched.
"""

from __future__ import annotations

import re
import string
import urllib.parse
from pathlib import Path

from opensearch_contract.errors import IllegalArgument

UNTRUSTED_URL = "URL can't match trusted url regex"
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


class UntrustedUrl(IllegalArgument):
    """A URL (or a redirect target) refused by the gate; the reason starts with ML Commons' message."""


def _decode_unreserved(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _ESCAPE.sub(one, text)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 on an absolute path: ``/a/b/../c/./d`` -> ``/a/c/d``; never climbs above ``/``."""
    out: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments[1:], start=1):
        last = index == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def normalize(url: str) -> str:
    """The normalised form of an absolute http(s)/ftp/file URL (see the module doc); raise ``UntrustedUrl`` for one
    that cannot be read unambiguously."""
    if _FORBIDDEN.search(url):
        raise UntrustedUrl(f"{UNTRUSTED_URL}: [{url}] holds whitespace, a control character or a backslash")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UntrustedUrl(f"{UNTRUSTED_URL}: [{url}] is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise UntrustedUrl(f"{UNTRUSTED_URL}: [{url}] has no scheme")
    if "@" in parts.netloc:
        raise UntrustedUrl(f"{UNTRUSTED_URL}: [{url}] carries userinfo (user@host); give the host alone")
    host = (parts.hostname or "").rstrip(".")
    if scheme == "file":
        if host not in ("", "localhost"):
            raise UntrustedUrl(f"{UNTRUSTED_URL}: file url [{url}] names a host; use file:///path")
        authority = ""
    else:
        if not host:
            raise UntrustedUrl(f"{UNTRUSTED_URL}: [{url}] has no host")
        authority = f"[{host}]" if ":" in host else host
        if port is not None and port != DEFAULT_PORTS.get(scheme):
            authority += f":{port}"
    path = remove_dot_segments(_decode_unreserved(parts.path or "/"))
    query = _decode_unreserved(parts.query)
    return urllib.parse.urlunsplit((scheme, authority, path, query, "")) if scheme != "file" else (
        "file://" + path + (f"?{query}" if query else "")
    )


def check(url: str, trusted_url_regex: str) -> str:
    """The normalised ``url`` if it matches ``trusted_url_regex`` (``re.match``, as ML Commons' Pattern.matches
    anchors it at the start); else ``UntrustedUrl``."""
    normalized = normalize(url)
    if not re.match(trusted_url_regex, normalized):
        raise UntrustedUrl(UNTRUSTED_URL if normalized == url else f"{UNTRUSTED_URL}: [{normalized}]")
    return normalized


def check_redirect(current: str, location: str, trusted_url_regex: str) -> str:
    """A redirect's target, resolved against the URL that answered it and checked like the first URL; only http(s)
    targets (a server cannot send the node to a local file)."""
    target = urllib.parse.urljoin(current, location)
    try:
        normalized = normalize(target)
    except UntrustedUrl as exc:
        raise UntrustedUrl(f"{exc.reason} (a redirect from [{current}])") from None
    if urllib.parse.urlsplit(normalized).scheme not in ("http", "https"):
        raise UntrustedUrl(
            f"{UNTRUSTED_URL}: [{current}] redirects to [{normalized}]; redirects may go to http(s) only"
        )
    if not re.match(trusted_url_regex, normalized):
        raise UntrustedUrl(f"{UNTRUSTED_URL}: [{current}] redirects to [{normalized}]")
    return normalized


def confined_file(path: Path, folders: tuple[Path, ...]) -> Path | None:
    """``path`` with symlinks resolved if it is a regular file inside one of ``folders`` (already resolved); None
    otherwise, whatever the reason (missing, outside, a folder, unreadable), so a caller learns nothing more."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not any(real.is_relative_to(folder) for folder in folders):
        return None
    return real if real.is_file() else None
