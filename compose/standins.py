"""Local stand-ins for the images Dockerfile and docker-compose.yaml name (no registry is reachable here).

Each stand-in carries the upstream name (docker.io/apache/airflow:<v>-python<py>, docker.io/library/postgres:<n>)
so the project's files are built and run unchanged. An image is rebuilt only when the digest of its inputs
(recorded in the image label ``ei.compose-check.inputs``) changed: building them costs minutes of CPU on a
shared machine.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml
from engine import Podman, log

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
LABEL = "ei.compose-check.inputs"
BASE_IMAGE = "localhost/ack-compose/debian:bookworm"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
# The upstream image's `postgres` extra, not in the project's lock (the project itself never talks to
# PostgreSQL): pinned here so the stand-in is reproducible.
AIRFLOW_EXTRA_REQUIREMENTS = "apache-airflow-providers-postgres==7.1.1 psycopg2-binary==2.9.13"


@dataclass(frozen=True)
class ImageNames:
    """What the project's files ask for: the Airflow base image (and its versions) and the database image."""

    airflow: str
    airflow_version: str
    python: str
    postgres: str


def image_names(repo: Path) -> ImageNames:
    """Read the image names from Dockerfile and docker-compose.yaml, and check them against uv.lock."""
    dockerfile = (repo / "Dockerfile").read_text()
    match = re.search(r"^FROM\s+(apache/airflow:(\S+)-python(\d+\.\d+))\s*$", dockerfile, re.MULTILINE)
    if not match:
        raise SystemExit("Dockerfile: no `FROM apache/airflow:<version>-python<X.Y>` line to build a stand-in for")
    airflow, version, python = match.groups()
    lock = tomllib.loads((repo / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    if locked.get("apache-airflow") != version:
        raise SystemExit(
            f"Dockerfile builds FROM apache/airflow:{version} but uv.lock pins apache-airflow "
            f"{locked.get('apache-airflow')}: bump the FROM line (or the lock) so both say the same version"
        )
    compose = yaml.safe_load((repo / "docker-compose.yaml").read_text())
    postgres = compose["services"]["postgres"]["image"]
    return ImageNames(airflow=qualified(airflow), airflow_version=version, python=python, postgres=qualified(postgres))


def qualified(name: str) -> str:
    """The fully qualified name an engine resolves a Docker Hub short name to (podman and docker alike)."""
    first = name.split("/")[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:32]


def tree_digest(path: Path) -> str:
    return digest(*(f"{p.relative_to(path)}:{p.read_bytes().hex()}" for p in sorted(path.rglob("*")) if p.is_file()))


def ensure_base(podman: Podman) -> str:
    """Debian bookworm minbase from debootstrap, imported as the base every stand-in builds on."""
    inputs = digest(DEBIAN_SUITE, DEBIAN_MIRROR, "minbase", "ca-certificates")
    if podman.label(BASE_IMAGE, LABEL) == inputs:
        log(f"reusing {BASE_IMAGE}")
        return podman.image_id(BASE_IMAGE)
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap not found (the check installs it with apt-get; see compose/README.md)")
    log(f"building {BASE_IMAGE} with debootstrap ({DEBIAN_SUITE})")
    with tempfile.TemporaryDirectory(prefix="ei-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=ca-certificates", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        podman.run(
            "import",
            "--change",
            f"LABEL {LABEL}={inputs}",
            "--change",
            'CMD ["/bin/bash"]',
            "-",
            BASE_IMAGE,
            stdin=tar.stdout,
        )
        if tar.wait() != 0:
            raise SystemExit("tar of the debootstrap rootfs failed")
    return podman.image_id(BASE_IMAGE)


def python_tree(version: str) -> Path:
    """The CPython installation the check itself runs on, which must be the image's Python version."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != version:
        raise SystemExit(f"the stand-in needs Python {version}; run the check with it (it runs on {running})")
    return Path(sys.base_prefix)


def stage_python(prefix: Path, version: str, dest: Path) -> None:
    """Copy the interpreter, its shared library and stdlib (no site-packages, no tests) into the build context."""
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(prefix / "bin" / f"python{version}", dest / "bin" / f"python{version}")
    (dest / "lib").mkdir()
    for lib in (prefix / "lib").glob(f"libpython{version}*.so*"):
        shutil.copy2(lib, dest / "lib" / lib.name, follow_symlinks=True)
    ignore = shutil.ignore_patterns("site-packages", "test", "tests", "__pycache__", "idlelib", "turtledemo")
    shutil.copytree(prefix / "lib" / f"python{version}", dest / "lib" / f"python{version}", ignore=ignore)
    (dest / "lib" / f"python{version}" / "site-packages").mkdir()
    if (prefix / "include" / f"python{version}").is_dir():
        shutil.copytree(prefix / "include" / f"python{version}", dest / "include" / f"python{version}")


def extra_ca() -> list[Path]:
    """The machine's locally added CA certificates (Debian's update-ca-certificates directory)."""
    return sorted(EXTRA_CA_DIR.glob("*.crt")) if EXTRA_CA_DIR.is_dir() else []


def stage_extra_ca(dest: Path) -> None:
    dest.mkdir()
    for cert in extra_ca():
        shutil.copy2(cert, dest / cert.name)


def constraints(repo: Path) -> str:
    """The project's lock as pip constraints: the stand-in's Airflow and providers are the tested versions."""
    uv = [shutil.which("uv")] if shutil.which("uv") else ["python3", "-m", "uv"]  # as the Makefile finds it
    out = subprocess.run(
        [*uv, "export", "--frozen", "--no-dev", "--all-extras", "--no-hashes", "--no-emit-project", "--no-header"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return "".join(line + "\n" for line in out.splitlines() if line and not line.startswith((" ", "#", "-e")))


def ensure_airflow(podman: Podman, repo: Path, names: ImageNames, base_id: str) -> None:
    """The apache/airflow stand-in (see standins/airflow/Containerfile for what it mirrors and why)."""
    pins = constraints(repo)
    prefix = python_tree(names.python)
    inputs = digest(
        base_id,
        tree_digest(STANDINS / "airflow"),
        pins,
        names.airflow_version,
        AIRFLOW_EXTRA_REQUIREMENTS,
        sys.version,
        str(prefix),
        *(p.read_bytes() for p in extra_ca()),
    )
    if podman.label(names.airflow, LABEL) == inputs:
        log(f"reusing {names.airflow}")
        return
    log(f"building {names.airflow} (Airflow {names.airflow_version} from uv.lock, Python {sys.version.split()[0]})")
    with tempfile.TemporaryDirectory(prefix="ei-airflow-ctx-", dir="/var/tmp") as tmp:
        ctx = Path(tmp)
        shutil.copy2(STANDINS / "airflow" / "Containerfile", ctx / "Containerfile")
        shutil.copy2(STANDINS / "airflow" / "entrypoint", ctx / "entrypoint")
        (ctx / "constraints.txt").write_text(pins)
        stage_python(prefix, names.python, ctx / "python")
        stage_extra_ca(ctx / "extra-ca")
        podman.build(
            ctx,
            names.airflow,
            inputs,
            f"AIRFLOW_VERSION={names.airflow_version}",
            f"AIRFLOW_EXTRA_REQUIREMENTS={AIRFLOW_EXTRA_REQUIREMENTS}",
        )


def ensure_postgres(podman: Podman, names: ImageNames, base_id: str) -> None:
    """The postgres stand-in (see standins/postgres/Containerfile)."""
    inputs = digest(base_id, tree_digest(STANDINS / "postgres"))
    if podman.label(names.postgres, LABEL) == inputs:
        log(f"reusing {names.postgres}")
        return
    log(f"building {names.postgres} from Debian's postgresql package")
    podman.build(STANDINS / "postgres", names.postgres, inputs)


def ensure_all(podman: Podman, repo: Path) -> ImageNames:
    names = image_names(repo)
    base_id = ensure_base(podman)
    ensure_postgres(podman, names, base_id)
    ensure_airflow(podman, repo, names, base_id)
    return names
