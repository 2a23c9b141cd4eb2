"""Checksummed, resumable downloads and safe archive extraction (stdlib ``urllib`` + tqdm).

:func:`fetch` downloads a URL to a file:

- the bytes go to ``<dest>.part`` first; an interrupted transfer resumes from there with an
  HTTP ``Range: bytes=N-`` request (a server that answers 200 instead of 206 restarts it from 0);
- connection errors, timeouts, HTTP 5xx/408/429 and truncated bodies (fewer bytes than the
  ``Content-Length``) are retried after ``backoff * 2**k`` seconds (k = 0, 1, ...);
- any other 4xx, and an HTML page served instead of the file (Content-Type ``text/html`` or a
  body starting with ``<!DOCTYPE``/``<html``; the GEARS Dataverse host answers 403 with one),
  fails at once;
- the sha256 is checked *before* ``os.replace`` moves the part file onto ``dest``, so ``dest``
  only ever holds verified bytes and nothing is unpickled or unpacked before that check.

Checksums — trust on first use (TOFU). A pinned ``sha256`` (from the workflow config) always
wins. Without one, the first successful download is trusted: its sha256 is written to the
sidecar ``<dest>.sha256`` and every later use (reusing ``dest`` or downloading it again) must
match it. TOFU catches later corruption and silently changed upstream files, not a bad first
download; pin the checksum in the config for that.

Every :class:`DownloadError` names the URL, what went wrong, and how to place the file by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import posixpath
import re
import shutil
import ssl
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from perturbench.errors import PerturbenchError

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_RETRY_STATUS = frozenset({408, 429})
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class DownloadError(PerturbenchError, RuntimeError):
    """A download that failed for good; the message says how to place the file by hand."""


class ArchiveError(PerturbenchError, ValueError):
    """An archive that cannot be extracted safely; the message names the archive and member."""


class _Transient(Exception):
    """A failure worth retrying: connection error, timeout, 5xx, truncated body."""


class _Fatal(Exception):
    """A failure retrying cannot fix: 4xx, HTML instead of the file."""


def _check_sha256(value: str, *, where: str) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise ValueError(f"{where}: {value!r} is not a sha256 hex digest (64 hex characters)")
    return value.lower()


@dataclass(frozen=True)
class RemoteFile:
    """A file of a public data source.

    ``name`` is the key used in configs, ``url`` where it lives, ``sha256`` its pinned checksum
    (``None``: trust on first use, see the module docstring) and ``filename`` the local name.
    """

    name: str
    url: str
    sha256: str | None
    filename: str

    def __post_init__(self) -> None:
        if self.sha256 is not None:
            _check_sha256(self.sha256, where=f"RemoteFile {self.name!r} sha256")


def _dataverse(file_id: int) -> str:
    return f"https://dataverse.harvard.edu/api/access/datafile/{file_id}"


#: The GEARS (cell-gears 0.1.2) files the workflow downloads from Harvard Dataverse (``remote``
#: names). Their checksums are not known offline; pin them in the workflow config (``sha256``).
GEARS_FILES: dict[str, RemoteFile] = {
    f.name: f
    for f in (
        RemoteFile("norman", _dataverse(6154020), None, "norman.zip"),
        RemoteFile("replogle_k562_essential", _dataverse(7458695), None, "replogle_k562_essential.zip"),
        RemoteFile("replogle_rpe1_essential", _dataverse(7458694), None, "replogle_rpe1_essential.zip"),
        RemoteFile("gene2go", _dataverse(6153417), None, "gene2go_all.pkl"),
    )
}


def sha256_file(path: Path) -> str:
    """Hex sha256 of the bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(dest: Path) -> Path:
    """Where the trust-on-first-use checksum of ``dest`` is recorded: ``<dest>.sha256``."""
    return dest.with_name(dest.name + ".sha256")


def _read_sidecar(dest: Path) -> str | None:
    side = sidecar_path(dest)
    if not side.exists():
        return None
    text = side.read_text().split()
    return _check_sha256(text[0] if text else "", where=f"checksum file {side}")


def _write_sidecar(dest: Path, digest: str) -> None:
    side = sidecar_path(dest)
    if _read_sidecar(dest) != digest:
        tmp = side.with_name(side.name + ".tmp")
        tmp.write_text(f"{digest}  {dest.name}\n")
        os.replace(tmp, side)


def _explain(url: str, dest: Path, expected: str | None, what: str) -> str:
    if expected:
        sha = f"its sha256 must be {expected}"
    else:
        sha = f"its sha256 is not pinned (pin it in the config), so it is recorded in {sidecar_path(dest)} on first use"
    return (
        f"download of {url} failed: {what}. To place the file by hand: "
        f"download {url} in a browser and save it as {dest}; {sha}."
    )


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, retried, checksum-verified) and return ``dest``.

    ``sha256`` pins the expected checksum; ``None`` trusts the first download and records it in
    ``<dest>.sha256``. An existing ``dest`` with the right checksum is returned without network.
    ``retries`` is the number of extra attempts after the first; attempt k+1 waits
    ``backoff * 2**k`` s. ``timeout`` bounds connecting and each read, in seconds.
    """
    dest = Path(dest)
    if sha256 is not None:
        sha256 = _check_sha256(sha256, where=f"sha256 for {dest}")
    expected = sha256 or _read_sidecar(dest)
    if dest.exists():
        return _reuse(url, dest, expected)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    try:
        _download_with_retries(url, part, retries=retries, backoff=backoff, timeout=timeout, progress=progress)
    except _Fatal as err:
        part.unlink(missing_ok=True)
        raise DownloadError(_explain(url, dest, expected, str(err))) from None
    except _Transient as err:
        what = f"gave up after {retries + 1} attempts; last error: {err}"
        raise DownloadError(_explain(url, dest, expected, what)) from None
    got = sha256_file(part)
    if expected is not None and got != expected:
        part.unlink()
        what = f"checksum mismatch: expected sha256 {expected}, got {got}; the downloaded file was deleted"
        raise DownloadError(_explain(url, dest, expected, what))
    os.replace(part, dest)
    _write_sidecar(dest, got)
    return dest


def _reuse(url: str, dest: Path, expected: str | None) -> Path:
    got = sha256_file(dest)
    if expected is not None and got != expected:
        raise DownloadError(
            f"{dest} already exists but its sha256 is {got}, expected {expected} (for {url}); "
            f"delete it and {sidecar_path(dest)} to download it again, or place the right file there"
        )
    _write_sidecar(dest, got)
    return dest


def _download_with_retries(
    url: str, part: Path, *, retries: int, backoff: float, timeout: float, progress: bool
) -> None:
    for attempt in range(retries + 1):
        try:
            _download_once(url, part, timeout=timeout, progress=progress)
            return
        except _Transient as err:
            if attempt == retries:
                raise
            wait = backoff * 2**attempt
            log.warning(
                "download of %s: %s; retrying in %.2f s (attempt %d of %d)", url, err, wait, attempt + 2, retries + 1
            )
            time.sleep(wait)


def _download_once(url: str, part: Path, *, timeout: float, progress: bool) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "perturbench-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            if resp.headers.get_content_type() == "text/html":
                raise _Fatal(f"the server sent an HTML page (HTTP {resp.status}, text/html) instead of the file")
            offset = _resume_offset(resp, part, offset)
            _copy_body(resp, part, offset=offset, progress=progress)
    except urllib.error.HTTPError as err:
        _raise_for_status(err, part)
    except TimeoutError:
        raise _Transient(f"timed out after {timeout} s") from None
    except urllib.error.URLError as err:
        raise _Transient(f"connection failed: {err.reason}") from None
    except (ConnectionError, http.client.HTTPException, ssl.SSLError) as err:
        raise _Transient(f"connection error: {err!r}") from None


def _resume_offset(resp: http.client.HTTPResponse, part: Path, offset: int) -> int:
    """Byte offset the body starts at: ``offset`` for a matching 206, else 0 (part file emptied)."""
    if offset and resp.status == 206:
        match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return offset
        part.unlink()
        raise _Transient(f"resume at byte {offset} answered with Content-Range {resp.headers['Content-Range']!r}")
    if offset:
        log.info("server ignored the Range request (HTTP %d); restarting from byte 0", resp.status)
    return 0


def _looks_like_html(head: bytes) -> bool:
    return head.lstrip()[:9].lower().startswith((b"<!doctype", b"<html"))


def _copy_body(resp: http.client.HTTPResponse, part: Path, *, offset: int, progress: bool) -> None:
    length = resp.headers.get("Content-Length")
    expected = int(length) if length is not None else None
    total = offset + expected if expected is not None else None
    received = 0
    with (
        open(part, "ab" if offset else "wb") as out,
        tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name, disable=not progress) as bar,
    ):
        while chunk := resp.read(_CHUNK):
            if received == 0 and offset == 0 and _looks_like_html(chunk):
                raise _Fatal(f"the server sent an HTML page (HTTP {resp.status}) instead of the file")
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if expected is not None and received < expected:
        raise _Transient(f"truncated transfer: got {received} of {expected} bytes")


def _raise_for_status(err: urllib.error.HTTPError, part: Path) -> NoReturn:
    if err.code == 416:
        part.unlink(missing_ok=True)
        raise _Transient("server rejected the resume range (HTTP 416); restarting from byte 0")
    if err.code >= 500 or err.code in _RETRY_STATUS:
        raise _Transient(f"HTTP {err.code} {err.reason}")
    try:
        head = err.read(512)
    except (OSError, http.client.HTTPException):
        head = b""
    html = (err.headers is not None and err.headers.get_content_type() == "text/html") or _looks_like_html(head)
    suffix = " with an HTML page instead of the file" if html else ""
    raise _Fatal(f"the server answered HTTP {err.code} {err.reason}{suffix}")


# -- archives ---------------------------------------------------------------------------------


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise ArchiveError(f"{archive}: unsupported archive type (expected .tar.gz, .tgz or .zip)")


def _check_member_path(name: str, archive: Path, what: str) -> None:
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise ArchiveError(f"{archive}: {what} has an absolute path; refusing to extract")
    norm = posixpath.normpath(clean)
    if norm == ".." or norm.startswith("../"):
        raise ArchiveError(f"{archive}: {what} escapes the target folder ('..'); refusing to extract")


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> None:
    _check_member_path(member.name, archive, f"member {member.name!r}")
    if member.issym():
        link = posixpath.join(posixpath.dirname(member.name), member.linkname)
        _check_member_path(link, archive, f"symlink {member.name!r} -> {member.linkname!r}")
    elif member.islnk():
        _check_member_path(member.linkname, archive, f"hardlink {member.name!r} -> {member.linkname!r}")
    elif not (member.isfile() or member.isdir()):
        raise ArchiveError(f"{archive}: member {member.name!r} is a device or fifo; refusing to extract")


def _extract_into(archive: Path, kind: str, folder: Path) -> None:
    if kind == "tar":
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_tar_member(member, archive)
            try:
                tar.extractall(folder, members=members, filter="data")
            except tarfile.FilterError as err:
                raise ArchiveError(f"{archive}: {err}; refusing to extract") from None
        return
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _check_member_path(info.filename, archive, f"member {info.filename!r}")
        zf.extractall(folder)


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Extract a .tar.gz/.tgz/.zip ``archive`` so that it becomes the folder ``target``.

    Every member is checked first: absolute paths, ``..`` and links pointing outside raise
    :class:`ArchiveError`. Extraction goes to a temporary folder beside ``target``, renamed onto
    ``target`` only when complete; ``target`` must not exist or be an empty folder. Returns the
    extracted files (not folders), sorted.
    """
    archive, target = Path(archive), Path(target)
    kind = _archive_kind(archive)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ArchiveError(
            f"{archive}: extraction target {target} exists and is not an empty folder; delete it to extract again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the extracted folder is ordinary data
    try:
        try:
            _extract_into(archive, kind, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
            raise ArchiveError(f"{archive}: not a readable {kind} archive ({err})") from None
        files = sorted(Path(root, f).relative_to(tmp) for root, _dirs, names in os.walk(tmp) for f in names)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return [target / f for f in files]
