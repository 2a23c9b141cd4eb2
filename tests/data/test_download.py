"""Tests for perturbench.data.download against a loopback HTTP server (never the network)."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _httpserver import LoopbackServer, Reply

from perturbench.data.download import (
    GEARS_FILES,
    ArchiveError,
    DownloadError,
    fetch,
    safe_extract,
    sidecar_path,
)

HTML = b"<!DOCTYPE html>\n<html><body>Access denied</body></html>\n"
FAST = {"backoff": 0.0, "timeout": 5.0, "progress": False}


@pytest.fixture
def payload(rng: np.random.Generator) -> bytes:
    return rng.integers(0, 256, size=5000, dtype=np.uint8).tobytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def part_of(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".part")


# -- fetch: failures that must not be retried --------------------------------------------------


def test_403_with_html_fails_at_once_with_manual_instructions(tmp_path: Path, payload: bytes) -> None:
    dest = tmp_path / "norman.zip"
    with LoopbackServer([Reply(HTML, status=403, content_type="text/html")]) as server:
        with pytest.raises(DownloadError, match=r"HTTP 403 Forbidden with an HTML page instead of the file") as err:
            fetch(server.url(), dest, sha256=sha(payload), retries=3, **FAST)
    assert len(server.requests) == 1
    assert f"download {server.url()} in a browser and save it as {dest}; its sha256 must be {sha(payload)}" in str(
        err.value
    )
    assert not dest.exists() and not part_of(dest).exists()


def test_html_body_with_status_200_is_rejected(tmp_path: Path) -> None:
    dest = tmp_path / "norman.zip"
    with LoopbackServer([Reply(b"  " + HTML)]) as server:
        with pytest.raises(DownloadError, match=r"HTML page \(HTTP 200\) instead of the file") as err:
            fetch(server.url(), dest, sha256=None, retries=2, **FAST)
    assert len(server.requests) == 1
    assert "its sha256 is not pinned" in str(err.value) and str(sidecar_path(dest)) in str(err.value)
    assert not dest.exists() and not part_of(dest).exists()


def test_404_plain_is_not_retried(tmp_path: Path) -> None:
    with LoopbackServer([Reply(b"no such file", status=404)]) as server:
        with pytest.raises(DownloadError, match=r"answered HTTP 404 Not Found\. To place"):
            fetch(server.url(), tmp_path / "x.bin", sha256=None, retries=3, **FAST)
    assert len(server.requests) == 1


# -- fetch: retried failures -------------------------------------------------------------------


def test_5xx_is_retried_then_succeeds(tmp_path: Path, payload: bytes, caplog: pytest.LogCaptureFixture) -> None:
    dest = tmp_path / "x.bin"
    with caplog.at_level(logging.WARNING), LoopbackServer([Reply(b"busy", status=503), Reply(payload)]) as server:
        fetch(server.url(), dest, sha256=sha(payload), retries=2, **FAST)
    assert dest.read_bytes() == payload
    assert "HTTP 503 Service Unavailable; retrying in 0.00 s (attempt 2 of 3)" in caplog.text


def test_truncated_transfer_is_retried_until_the_server_recovers(
    tmp_path: Path, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "x.bin"
    script = [Reply(payload, cut_after=100, honor_range=False), Reply(payload, cut_after=7), Reply(payload)]
    with caplog.at_level(logging.WARNING), LoopbackServer(script) as server:
        fetch(server.url(), dest, sha256=sha(payload), retries=3, **FAST)
    assert dest.read_bytes() == payload
    assert f"truncated transfer: got 100 of {len(payload)} bytes" in caplog.text
    assert len(server.requests) == 3


def test_truncated_transfer_fails_after_the_retries(tmp_path: Path, payload: bytes) -> None:
    dest = tmp_path / "x.bin"
    with LoopbackServer([Reply(payload, cut_after=10, honor_range=False)]) as server:
        with pytest.raises(
            DownloadError,
            match=rf"gave up after 3 attempts; last error: truncated transfer: got 10 of {len(payload)} bytes",
        ):
            fetch(server.url(), dest, sha256=None, retries=2, **FAST)
    assert len(server.requests) == 3
    assert not dest.exists()


def test_slow_server_times_out_and_is_retried(tmp_path: Path, payload: bytes, caplog: pytest.LogCaptureFixture) -> None:
    dest = tmp_path / "x.bin"
    options = {**FAST, "timeout": 0.2}
    with caplog.at_level(logging.WARNING), LoopbackServer([Reply(payload, delay=0.6), Reply(payload)]) as server:
        fetch(server.url(), dest, sha256=sha(payload), retries=1, **options)
    assert dest.read_bytes() == payload
    assert "timed out after 0.2 s; retrying" in caplog.text


def test_slow_server_fails_after_the_retries(tmp_path: Path, payload: bytes) -> None:
    options = {**FAST, "timeout": 0.2}
    with LoopbackServer([Reply(payload, delay=0.5)]) as server:
        with pytest.raises(DownloadError, match=r"gave up after 2 attempts; last error: timed out after 0.2 s"):
            fetch(server.url(), tmp_path / "x.bin", sha256=None, retries=1, **options)


# -- fetch: resuming -------------------------------------------------------------------------


def test_interrupted_download_resumes_with_a_range_request(tmp_path: Path, payload: bytes) -> None:
    dest = tmp_path / "x.tar.gz"
    half = len(payload) // 2
    with LoopbackServer([Reply(payload, cut_after=half), Reply(payload)]) as server:
        fetch(server.url(), dest, sha256=sha(payload), retries=1, **FAST)
    assert "Range" not in server.requests[0].headers
    assert server.requests[1].headers["Range"] == f"bytes={half}-"
    assert dest.read_bytes() == payload
    assert not part_of(dest).exists()


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, payload: bytes) -> None:
    dest = tmp_path / "x.bin"
    part_of(dest).write_bytes(b"stale bytes from an older attempt")
    with LoopbackServer([Reply(payload, honor_range=False)]) as server:
        fetch(server.url(), dest, sha256=sha(payload), retries=0, **FAST)
    assert server.requests[0].headers["Range"] == "bytes=33-"
    assert dest.read_bytes() == payload


# -- fetch: checksums ------------------------------------------------------------------------


def test_wrong_checksum_deletes_the_download(tmp_path: Path, payload: bytes) -> None:
    dest = tmp_path / "gene2go_all.pkl"
    wrong = sha(b"something else")
    with LoopbackServer([Reply(payload)]) as server:
        with pytest.raises(DownloadError, match=rf"checksum mismatch: expected sha256 {wrong}, got {sha(payload)}"):
            fetch(server.url(), dest, sha256=wrong, retries=0, **FAST)
    assert not dest.exists() and not part_of(dest).exists() and not sidecar_path(dest).exists()


def test_existing_file_with_right_checksum_makes_no_request(tmp_path: Path, payload: bytes) -> None:
    dest = tmp_path / "x.bin"
    dest.write_bytes(payload)
    with LoopbackServer([Reply(payload)]) as server:
        assert fetch(server.url(), dest, sha256=sha(payload), **FAST) == dest
    assert server.requests == []
    assert sidecar_path(dest).read_text().split()[0] == sha(payload)


def test_existing_file_with_wrong_checksum_is_an_error_without_request(tmp_path: Path, payload: bytes) -> None:
    dest = tmp_path / "x.bin"
    dest.write_bytes(b"hand-placed but wrong")
    with LoopbackServer([Reply(payload)]) as server:
        with pytest.raises(
            DownloadError,
            match=rf"already exists but its sha256 is {sha(b'hand-placed but wrong')}, expected {sha(payload)}",
        ):
            fetch(server.url(), dest, sha256=sha(payload), **FAST)
    assert server.requests == []
    assert dest.read_bytes() == b"hand-placed but wrong"


def test_first_download_is_recorded_and_enforced_later(tmp_path: Path, payload: bytes) -> None:
    dest = tmp_path / "x.bin"
    with LoopbackServer([Reply(payload), Reply(b"changed upstream")]) as server:
        fetch(server.url(), dest, sha256=None, **FAST)
        assert sidecar_path(dest).read_text() == f"{sha(payload)}  x.bin\n"
        assert fetch(server.url(), dest, sha256=None, **FAST) == dest
        dest.unlink()
        with pytest.raises(DownloadError, match=rf"expected sha256 {sha(payload)}, got {sha(b'changed upstream')}"):
            fetch(server.url(), dest, sha256=None, retries=0, **FAST)
    assert len(server.requests) == 2


def test_malformed_pinned_checksum_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'abc' is not a sha256 hex digest"):
        fetch("http://127.0.0.1:9/never", tmp_path / "x.bin", sha256="abc", **FAST)


# -- the GEARS source table ------------------------------------------------------------------


def test_gears_files_table() -> None:
    assert GEARS_FILES["norman"].url == "https://dataverse.harvard.edu/api/access/datafile/6154020"
    assert GEARS_FILES["gene2go"].filename == "gene2go_all.pkl"
    assert set(GEARS_FILES) == {"norman", "replogle_k562_essential", "replogle_rpe1_essential", "gene2go"}
    assert {f.sha256 for f in GEARS_FILES.values()} == {None}


# -- safe_extract ----------------------------------------------------------------------------


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def file_member(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def link_member(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_safe_extract_tar_and_zip(tmp_path: Path) -> None:
    tar = make_tar(
        tmp_path / "a.tar.gz", [(file_member("norman/perturb_processed.h5ad"), b"h5"), (file_member("readme"), b"r")]
    )
    got = safe_extract(tar, tmp_path / "out_tar")
    assert got == [tmp_path / "out_tar" / "norman" / "perturb_processed.h5ad", tmp_path / "out_tar" / "readme"]
    assert got[0].read_bytes() == b"h5"
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        zf.writestr("norman/perturb_processed.h5ad", b"z")
    assert safe_extract(tmp_path / "b.zip", tmp_path / "out_zip") == [
        tmp_path / "out_zip" / "norman" / "perturb_processed.h5ad"
    ]


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (file_member("../evil.txt"), r"member '../evil.txt' escapes the target folder"),
        (file_member("/tmp/evil.txt"), r"member '/tmp/evil.txt' has an absolute path"),
        (link_member("data/link", "../../etc", tarfile.SYMTYPE), r"symlink 'data/link' -> '../../etc' escapes"),
        (
            link_member("data/abs", "/etc/passwd", tarfile.SYMTYPE),
            r"symlink 'data/abs' -> '/etc/passwd' has an absolute path",
        ),
        (link_member("data/hard", "../outside", tarfile.LNKTYPE), r"hardlink 'data/hard' -> '../outside' escapes"),
    ],
    ids=["dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out"],
)
def test_safe_extract_rejects_escaping_tar_member(tmp_path: Path, member: tarfile.TarInfo, message: str) -> None:
    tar = make_tar(tmp_path / "bad.tar.gz", [(file_member("ok.txt"), b"ok"), (member, b"x")])
    with pytest.raises(ArchiveError, match=message):
        safe_extract(tar, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz"]


def test_safe_extract_rejects_zip_with_dotdot(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("ok.txt", b"ok")
        zf.writestr("../evil.txt", b"x")
    with pytest.raises(ArchiveError, match=r"member '../evil.txt' escapes the target folder"):
        safe_extract(tmp_path / "bad.zip", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


def test_safe_extract_refuses_a_non_empty_target(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "a.tgz", [(file_member("f"), b"1")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("mine")
    with pytest.raises(ArchiveError, match=r"target .*out exists and is not an empty folder"):
        safe_extract(tar, tmp_path / "out")


def test_safe_extract_rejects_unknown_and_corrupt_archives(tmp_path: Path) -> None:
    (tmp_path / "a.rar").write_bytes(b"x")
    with pytest.raises(ArchiveError, match=r"unsupported archive type"):
        safe_extract(tmp_path / "a.rar", tmp_path / "out")
    (tmp_path / "b.tar.gz").write_bytes(HTML)
    with pytest.raises(ArchiveError, match=r"b.tar.gz: not a readable tar archive"):
        safe_extract(tmp_path / "b.tar.gz", tmp_path / "out")
