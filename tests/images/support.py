"""Tiny container images built on the spot from busybox-static: nothing is pulled."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = (
    "sh", "cat", "echo", "head", "httpd", "tr", "wc", "sleep", "nc", "id", "dd", "env", "grep",
    "tail", "cut",
)  # fmt: skip

# The http contract: httpd runs /cgi-bin/index.cgi for "/"; each container writes a random id
# at start so a test can tell one warm container from a new one.
HTTP_ENTRY = "cat /proc/sys/kernel/random/uuid > /tmp/id; exec httpd -f -p $PORT -h /www"
HTTP_CGI = r"""#!/bin/sh
body=$(head -c "${CONTENT_LENGTH:-0}")
case "$body" in
  *fail*) printf 'Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nbroken'
          exit 0 ;;
  *grow*) x=$(head -c 200000000 /dev/zero | tr '\0' a); echo "${#x}" ;;
  *slow*) sleep 30 ;;
  *where*) printf 'Content-Type: application/json\r\n\r\n'
           printf '{"node": "%s", "container": "%s", "got": %s}' \
             "$PRATAI_NODE" "$(cat /tmp/id)" "$body"
           exit 0 ;;
esac
printf 'Content-Type: application/json\r\n\r\n'
printf '{"container": "%s", "got": %s, "uid": "%s"}' "$(cat /tmp/id)" "$body" "$(id -u)"
"""

# The stdio contract: stdin in, stdout out.
STDIO_ENTRY = r"""body=$(cat)
words=$(echo "$body" | tr -d '"')
case "$body" in
  *grow*) x=$(head -c 200000000 /dev/zero | tr '\0' a); echo "${#x}" ;;
  *slow*) sleep 30 ;;
  *fail*) echo "failing on purpose" >&2; exit 3 ;;
  *text*) echo "plain words"; exit 0 ;;
  *where*) printf '{"node": "%s", "got": %s}' "$PRATAI_NODE" "$body"; exit 0 ;;
  *env*) echo "token is $IMG_TOKEN"; printf '{"port": "%s", "fn": "%s"}' "$PORT" "$PRATAI_FUNCTION"
         exit 0 ;;
  *probe*)
    caps=$(grep CapEff /proc/self/status | cut -f2)
    nets=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')
    if echo x > /rootfile 2>/dev/null; then rootfs=writable; else rootfs=read-only; fi
    if echo x > /tmp/scratch; then tmp=writable; else tmp=read-only; fi
    printf '{"uid": "%s", "caps": "%s", "nets": "%s", "rootfs": "%s", "tmp": "%s"}' \
      "$(id -u)" "$caps" "$nets" "$rootfs" "$tmp"
    exit 0 ;;
  *connect*) echo hi | nc -w 2 ${words#*connect } && echo reached || echo unreachable; exit 0 ;;
esac
echo "log line" >&2
printf '{"got": %s, "uid": "%s"}' "$body" "$(id -u)"
"""


def build_image(workdir: Path, kind: str) -> tuple[Path, str]:
    """A docker-save archive of a busybox image (`kind` http or stdio) and its ref; the image
    is removed from podman again, so loading the archive really loads it."""
    ref = f"localhost/pratai-test-{kind}:{uuid.uuid4().hex[:8]}"
    root = workdir / f"root-{kind}"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for folder in ("tmp", "proc", "dev", "etc", "run"):
        (root / folder).mkdir()
    (root / "tmp").chmod(0o1777)  # podman's tmpfs over /tmp keeps the image folder's mode
    (root / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    if kind == "http":
        (root / "www" / "cgi-bin").mkdir(parents=True)
        cgi = root / "www" / "cgi-bin" / "index.cgi"
        cgi.write_text(HTTP_CGI)
        cgi.chmod(0o755)
        entry = HTTP_ENTRY
    else:
        entry = STDIO_ENTRY
    (root / "entry.sh").write_text(entry)
    rootfs = workdir / f"rootfs-{kind}.tar"
    with tarfile.open(rootfs, "w") as tar:
        tar.add(root, arcname=".")
    subprocess.run(
        ["podman", "import", "--quiet", "--change", 'CMD ["/bin/sh", "/entry.sh"]',
         str(rootfs), ref],
        check=True, capture_output=True,
    )  # fmt: skip
    archive = workdir / f"{kind}.tar"
    subprocess.run(["podman", "save", "--quiet", "-o", str(archive), ref], check=True)
    subprocess.run(["podman", "rmi", "--force", ref], check=True, capture_output=True)
    return archive, ref
