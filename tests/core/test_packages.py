from __future__ import annotations

import hashlib
import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from pratai.core.packages import Limits, PackageInfo, inspect_package, unpack
from pratai.errors import InvalidPackage, PayloadTooLarge
from pratai.settings import Settings

LIMITS = Limits(
    max_package_bytes=1024 * 1024,
    max_unpacked_bytes=8 * 1024 * 1024,
    max_compression_ratio=50,
    max_files=20,
)
MAIN = "def main(payload):\n    return payload\n"


def make_zip(files: dict[str, str | bytes], *, deflate: bool = True) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def rejected(data: bytes, handler: str | None = None, limits: Limits = LIMITS) -> InvalidPackage:
    with pytest.raises(InvalidPackage) as exc:
        inspect_package(data, limits, handler)
    return exc.value


# ------------------------------------------------------------------ happy paths


def test_limits_from_settings() -> None:
    s = Settings(max_package_bytes=1, max_unpacked_bytes=2, max_compression_ratio=3)
    assert Limits.from_settings(s) == Limits(1, 2, 3, 10000)


def test_main_py_with_main() -> None:
    info = inspect_package(make_zip({"main.py": MAIN, "util.py": "def main(): ..."}), LIMITS)
    assert info == PackageInfo("main.main", None, None)


def test_async_main() -> None:
    info = inspect_package(make_zip({"main.py": "async def main(p):\n    return p\n"}), LIMITS)
    assert info.handler == "main.main"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"app.py": "def handler(event, context):\n    pass\n"}, "app.handler"),
        ({"tagger.py": "def main(p): pass\n", "README.md": "hi"}, "tagger.main"),
        ({"both.py": "def handler(e, c): pass\ndef main(p): pass\n"}, "both.main"),
        ({"main.py": "def handler(e, c): pass\n"}, "main.handler"),
        ({"app.py": "def handler(e, c): pass\n", "lib.py": "X = 1\n"}, "app.handler"),
    ],
)
def test_discovery(files: dict[str, str | bytes], expected: str) -> None:
    assert inspect_package(make_zip(files), LIMITS).handler == expected


def test_explicit_handler_dotted() -> None:
    data = make_zip({"pkg/__init__.py": "", "pkg/mod.py": "def run(p): pass\n", "x.py": ""})
    assert inspect_package(data, LIMITS, "pkg.mod.run").handler == "pkg.mod.run"
    data = make_zip({"pkg/__init__.py": "from .impl import go\n", "pkg/impl.py": "def go(): ..."})
    assert inspect_package(data, LIMITS, "pkg.go").handler == "pkg.go"


def test_explicit_handler_missing_function() -> None:
    e = rejected(make_zip({"main.py": MAIN}), "main.nope")
    assert "handler function 'nope' not found in main.py" in e.message


def test_explicit_handler_missing_module() -> None:
    e = rejected(make_zip({"main.py": MAIN}), "app.main")
    assert "handler module 'app' not found" in e.message
    assert "app.py" in e.message


def test_explicit_handler_malformed() -> None:
    assert "invalid handler" in rejected(make_zip({"main.py": MAIN}), "main").message
    assert "invalid handler" in rejected(make_zip({"main.py": MAIN}), "../x.main").message


def test_no_handler() -> None:
    e = rejected(make_zip({"lib.py": "def helper(): pass\n", "data.txt": "x"}))
    assert e.message.startswith("no handler found")
    assert "main.py" in e.message
    assert e.details["python_files"] == ["lib.py"]


def test_ambiguous_handler() -> None:
    e = rejected(make_zip({"a.py": "def main(p): pass\n", "b.py": "def handler(e, c): pass\n"}))
    assert "several modules define a handler" in e.message
    assert e.details["candidates"] == ["a.main", "b.handler"]


def test_nested_main_is_not_top_level() -> None:
    e = rejected(make_zip({"main.py": "if True:\n    def main(p): pass\n"}))
    assert "no handler found" in e.message


def test_syntax_error_names_file_and_line() -> None:
    e = rejected(make_zip({"main.py": "import os\n\ndef main(p)\n    return p\n"}))
    assert e.message.startswith("main.py line 3: ")
    assert e.details["file"] == "main.py"
    assert e.details["line"] == 3
    assert e.details["text"] == "def main(p)"
    e = rejected(make_zip({"app.py": "def handler(:\n"}), "app.handler")
    assert e.message.startswith("app.py line 1")


def test_requirements_normalised_and_hashed() -> None:
    reqs = "# deps\n\nsix==1.16.0   # pinned\n  idna>=3\n\nrequests \\\n  [socks]\n"
    info = inspect_package(make_zip({"main.py": MAIN, "requirements.txt": reqs}), LIMITS)
    assert info.requirements == "idna>=3\nrequests [socks]\nsix==1.16.0\n"
    assert info.requirements_hash == hashlib.sha256(info.requirements.encode()).hexdigest()
    same = "idna>=3\nsix==1.16.0\nrequests [socks]\n"
    other = inspect_package(make_zip({"main.py": MAIN, "requirements.txt": same}), LIMITS)
    assert other.requirements_hash == info.requirements_hash


def test_requirements_only_comments_is_none() -> None:
    info = inspect_package(make_zip({"main.py": MAIN, "requirements.txt": "# none\n\n"}), LIMITS)
    assert info.requirements is None and info.requirements_hash is None


def test_directory_wrapped_zip(tmp_path: Path) -> None:
    data = make_zip(
        {
            "myfn/": "",
            "myfn/main.py": MAIN,
            "myfn/requirements.txt": "six\n",
            "myfn/lib/util.py": "X = 1\n",
            "__MACOSX/myfn/._main.py": "junk",
        }
    )
    info = inspect_package(data, LIMITS)
    assert (info.handler, info.requirements, info.strip_prefix) == ("main.main", "six\n", "myfn/")
    unpack(data, tmp_path / "code", LIMITS)
    assert (tmp_path / "code" / "main.py").read_text() == MAIN
    assert (tmp_path / "code" / "lib" / "util.py").exists()
    assert not (tmp_path / "code" / "myfn").exists()
    assert not (tmp_path / "code" / "__MACOSX").exists()


def test_single_folder_not_stripped_when_top_level_py() -> None:
    data = make_zip({"main.py": MAIN, "pkg/mod.py": "def main(p): pass\n"})
    assert inspect_package(data, LIMITS).strip_prefix == ""


def test_single_python_package_folder_not_stripped(tmp_path: Path) -> None:
    data = make_zip({"pkg/__init__.py": "", "pkg/mod.py": "def run(p): pass\n"})
    assert inspect_package(data, LIMITS, "pkg.mod.run").strip_prefix == ""
    assert "no handler found" in rejected(data).message
    unpack(data, tmp_path / "out", LIMITS)
    assert (tmp_path / "out" / "pkg" / "mod.py").exists()


# ------------------------------------------------------------------ rejections


def test_package_too_large() -> None:
    with pytest.raises(PayloadTooLarge) as exc:
        inspect_package(b"x" * 200, Limits(max_package_bytes=100))
    assert "over the limit of 100 bytes" in exc.value.message


@pytest.mark.parametrize("data", [b"", b"not a zip at all", b"PK\x03\x04garbage"])
def test_not_a_zip(data: bytes) -> None:
    e = rejected(data)
    assert "empty" in e.message or "not a valid zip file" in e.message


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/passwd", "is absolute"),
        ("../evil.py", "contains '..'"),
        ("a/../../evil.py", "contains '..'"),
        ("..\\..\\evil.py", "contains '..'"),
        ("C:/Windows/evil.py", "drive letter"),
        ("C:evil.py", "drive letter"),
        ("\\\\server\\share\\x.py", "is absolute"),
    ],
)
def test_unsafe_paths(name: str, why: str, tmp_path: Path) -> None:
    data = make_zip({"main.py": MAIN, name: "x"})
    e = rejected(data)
    assert "unsafe path in package" in e.message and why in e.message
    with pytest.raises(InvalidPackage):
        unpack(data, tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.py").exists()


def test_symlink_rejected() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", MAIN)
        link = zipfile.ZipInfo("link.py")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    assert "symbolic link" in rejected(buf.getvalue()).message


def test_too_many_files() -> None:
    files: dict[str, str | bytes] = {f"f{i}.txt": "" for i in range(25)}
    files["main.py"] = MAIN
    e = rejected(make_zip(files))
    assert "26 entries, over the limit of 20" in e.message


def test_declared_total_too_big() -> None:
    limits = Limits(max_unpacked_bytes=1000, max_compression_ratio=1000)
    e = rejected(make_zip({"main.py": MAIN, "big.txt": "a" * 5000}), limits=limits)
    assert "unpacks to 5" in e.message and "over the limit of 1000" in e.message


def test_high_ratio_entry_is_a_bomb() -> None:
    e = rejected(make_zip({"main.py": MAIN, "zeros.bin": b"\0" * (2 * 1024 * 1024)}))
    assert "compression ratio" in e.message and "zip bomb" in e.message
    assert e.details["entry"] == "zeros.bin"


def test_small_high_ratio_entry_is_fine() -> None:
    inspect_package(make_zip({"main.py": MAIN, "zeros.bin": b"\0" * 100_000}), LIMITS)


def test_encrypted_entry() -> None:
    data = bytearray(make_zip({"main.py": MAIN}, deflate=False))
    # set the "encrypted" flag bit in both the local header and the central directory
    data[6:8] = struct.pack("<H", struct.unpack("<H", data[6:8])[0] | 1)
    cd = data.find(b"PK\x01\x02")
    data[cd + 8 : cd + 10] = struct.pack("<H", struct.unpack("<H", data[cd + 8 : cd + 10])[0] | 1)
    assert "is encrypted" in rejected(bytes(data)).message


def _lie_about_size(data: bytes, name: bytes, size: int) -> bytes:
    """Rewrite the uncompressed size of `name` in the local and central headers."""
    out = bytearray(data)
    for sig, off_size, off_name_len, hdr in (
        (b"PK\x03\x04", 22, 26, 30),
        (b"PK\x01\x02", 24, 28, 46),
    ):
        pos = 0
        while (pos := out.find(sig, pos)) != -1:
            n = struct.unpack("<H", out[pos + off_name_len : pos + off_name_len + 2])[0]
            if out[pos + hdr : pos + hdr + n] == name:
                out[pos + off_size : pos + off_size + 4] = struct.pack("<I", size)
            pos += 4
    return bytes(out)


def test_lying_header_caught_while_extracting(tmp_path: Path) -> None:
    # 3 MiB of zeros that claims to be 10 KiB: passes the declared checks, fails while inflating
    honest = make_zip({"main.py": MAIN, "zeros.bin": b"\0" * (3 * 1024 * 1024)})
    data = _lie_about_size(honest, b"zeros.bin", 10_000)
    limits = Limits(max_unpacked_bytes=64 * 1024 * 1024, max_compression_ratio=10_000)
    inspect_package(data, limits)  # headers look fine and zeros.bin is never read here
    with pytest.raises(InvalidPackage) as exc:
        unpack(data, tmp_path / "out", limits)
    assert "zeros.bin" in exc.value.message
    assert not (tmp_path / "out").exists()


@pytest.fixture
def no_declared_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validate headers with huge limits, so only the byte counting while extracting can catch
    what the (lying) headers hide."""
    import pratai.core.packages as packages

    original = packages._entries
    lax = Limits(max_unpacked_bytes=10**12, max_compression_ratio=10**9, max_files=10**6)
    monkeypatch.setattr(packages, "_entries", lambda zf, limits: original(zf, lax))


@pytest.mark.usefixtures("no_declared_checks")
def test_streaming_ratio_enforced(tmp_path: Path) -> None:
    data = make_zip({"main.py": MAIN, "zeros.bin": b"\0" * (2 * 1024 * 1024)})
    with pytest.raises(InvalidPackage, match=r"compression ratio of .* over the limit of 50:1"):
        unpack(data, tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("no_declared_checks")
def test_streaming_total_budget_across_entries(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {f"f{i}.txt": "y" * 400 for i in range(5)}
    files["main.py"] = MAIN
    with pytest.raises(InvalidPackage, match="unpacks to more than 1500 bytes"):
        unpack(make_zip(files), tmp_path / "out", Limits(max_unpacked_bytes=1500))


def test_declared_total_checked_by_unpack(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {f"f{i}.txt": "y" * 400 for i in range(5)}
    with pytest.raises(InvalidPackage, match="over the limit of 1500"):
        unpack(make_zip(files), tmp_path / "out", Limits(max_unpacked_bytes=1500))


def test_duplicate_entries() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", MAIN)
        with pytest.warns(UserWarning):
            zf.writestr("main.py", "import os\n")
    assert "two entries named 'main.py'" in rejected(buf.getvalue()).message


# ------------------------------------------------------------------ unpack


def test_unpack_permissions(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", MAIN)
        private = zipfile.ZipInfo("pkg/secret.py")
        private.external_attr = 0o600 << 16
        zf.writestr(private, "X = 1\n")
        d = zipfile.ZipInfo("empty/")
        d.external_attr = (stat.S_IFDIR | 0o700) << 16
        zf.writestr(d, "")
    dest = tmp_path / "a" / "b"
    unpack(buf.getvalue(), dest, LIMITS)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "main.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "pkg").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "pkg" / "secret.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "empty").stat().st_mode) == 0o755
    assert (dest / "pkg" / "secret.py").read_text() == "X = 1\n"
    assert sorted(p.name for p in dest.iterdir()) == ["empty", "main.py", "pkg"]


def test_unpack_file_and_dir_clash(tmp_path: Path) -> None:
    data = make_zip({"main.py": MAIN, "x": "file", "x/y.py": "dir"})
    with pytest.raises(InvalidPackage, match="cannot"):
        unpack(data, tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists()
