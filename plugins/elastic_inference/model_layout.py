"""Validate a model source and map it to TF Serving's layout: ``<model>/<version>/saved_model.pb`` + ``variables/``.

TF Serving's file system storage path source loads ``<base_path>/<numeric version>/`` directories and ignores
anything else; each version is a SavedModel (``saved_model.pb`` or ``saved_model.pbtxt``, with a
``variables/`` directory holding ``variables.index`` and ``variables.data-*`` shards). Pure logic + local files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from elastic_inference.exceptions import ModelLayoutError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
OSS_SCHEME = "oss://"
OSS_SOURCE_FIX = "point model_source at one version folder of a SavedModel, e.g. oss://<bucket>/<prefix>/<model>/3/"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
MAX_FILES = 100_000
_SKIP = {".DS_Store", "__MACOSX"}


@dataclass(frozen=True)
class ModelFile:
    local_path: Path
    relative_key: str  # "<version>/saved_model.pb", "<version>/variables/variables.index", ...
    size: int


@dataclass(frozen=True)
class ModelLayout:
    versions: tuple[int, ...]
    files: tuple[ModelFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def saved_model_problems(path: Path) -> list[str]:
    """What keeps ``path`` from being a loadable SavedModel (empty when fine)."""
    problems: list[str] = []
    if not any((path / name).is_file() for name in SAVED_MODEL_FILES):
        problems.append(
            f"{path}: no saved_model.pb (or saved_model.pbtxt) - export the model with "
            "model.export(dir) / tf.saved_model.save(model, dir)"
        )
    variables = path / "variables"
    if not variables.is_dir():
        problems.append(f"{path}: no variables/ directory next to saved_model.pb")
    else:
        if not (variables / "variables.index").is_file():
            problems.append(f"{variables}: variables.index is missing")
        if not any(p.name.startswith("variables.data-") for p in variables.iterdir()):
            problems.append(f"{variables}: no variables.data-* shard")
    return problems


def _is_saved_model(path: Path) -> bool:
    return any((path / name).is_file() for name in SAVED_MODEL_FILES)


def _version_dirs(path: Path) -> dict[int, Path]:
    return {int(p.name): p for p in path.iterdir() if p.is_dir() and p.name.isdigit()}


def _files(root: Path, version: int) -> list[ModelFile]:
    out: list[ModelFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP and not d.startswith("."))
        for name in sorted(filenames):
            if name in _SKIP or name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.is_symlink():
                raise ModelLayoutError(f"{path}: symbolic links are not uploaded; copy the file in place")
            rel = path.relative_to(root).as_posix()
            out.append(ModelFile(path, f"{version}/{rel}", path.stat().st_size))
            if len(out) > MAX_FILES:
                raise ModelLayoutError(f"{root}: more than {MAX_FILES} files; is this really a SavedModel?")
    return out


def resolve_layout(source: Path, version: int | None = None) -> ModelLayout:
    """Validate ``source`` (a SavedModel dir, or a dir of numeric version dirs) and list what to upload.

    ``version``: the version number for a single SavedModel (default 1); for a versioned dir, upload only
    that version (default: all of them).
    """
    if version is not None and (not isinstance(version, int) or version < 0):
        raise ModelLayoutError(f"version={version!r}: TF Serving versions are non-negative integers")
    if not source.exists():
        raise ModelLayoutError(f"source {source} does not exist")
    if not source.is_dir():
        raise ModelLayoutError(f"source {source} is neither a directory nor a {'/'.join(ARCHIVE_SUFFIXES)} archive")
    if _is_saved_model(source):
        problems = saved_model_problems(source)
        if problems:
            raise ModelLayoutError("not a complete SavedModel:\n  - " + "\n  - ".join(problems))
        v = 1 if version is None else version
        return ModelLayout((v,), tuple(_files(source, v)))
    versions = _version_dirs(source)
    if not versions:
        entries = sorted(p.name for p in source.iterdir())[:10]
        raise ModelLayoutError(
            f"{source} has no saved_model.pb and no numeric version directories (found {entries or 'nothing'}): "
            "give a SavedModel directory (saved_model.pb + variables/) or a directory of <version>/ SavedModels"
        )
    if version is not None:
        if version not in versions:
            raise ModelLayoutError(f"version {version} not found in {source} (has {sorted(versions)})")
        versions = {version: versions[version]}
    problems = [p for v in sorted(versions) for p in saved_model_problems(versions[v])]
    if problems:
        raise ModelLayoutError("version directories are not complete SavedModels:\n  - " + "\n  - ".join(problems))
    files = [f for v in sorted(versions) for f in _files(versions[v], v)]
    return ModelLayout(tuple(sorted(versions)), tuple(files))


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _archive_id(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]


def _safe_members_zip(zf: zipfile.ZipFile, dest: Path) -> None:
    for info in zf.infolist():
        target = (dest / info.filename).resolve()
        if not target.is_relative_to(dest.resolve()):
            raise ModelLayoutError(f"archive member {info.filename!r} escapes the extraction directory")


def extract_archive(archive: Path, work_dir: Path) -> Path:
    """Extract once into ``work_dir/<archive id>/`` (stable across re-runs, so upload checkpoints still match
    the same file paths and mtimes). Returns the model root (a lone top-level directory is descended into)."""
    dest = work_dir / _archive_id(archive)
    marker = dest / ".extracted"
    if not marker.exists():
        if dest.exists():
            shutil.rmtree(dest)
        tmp = dest.with_name(dest.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            if archive.name.lower().endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:
                    _safe_members_zip(zf, tmp)
                    zf.extractall(tmp)
            else:
                with tarfile.open(archive) as tf:
                    tf.extractall(tmp, filter="data")  # rejects absolute paths, '..', devices, unsafe links
        except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ModelLayoutError(f"cannot extract {archive}: {e}") from e
        tmp.rename(dest)
        marker.write_text(str(archive))
    entries = [p for p in dest.iterdir() if p.name not in _SKIP and not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].name.isdigit():
        return entries[0]
    return dest


# -- a model already in OSS ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OssLocation:
    """``oss://<bucket>/<prefix><version>/``: a version folder in OSS (``prefix`` ends with '/' or is empty)."""

    bucket: str
    key_prefix: str  # the version folder's own prefix, ending with '/'
    version: int

    @property
    def uri(self) -> str:
        return f"{OSS_SCHEME}{self.bucket}/{self.key_prefix}"


def is_oss_uri(source: str) -> bool:
    return isinstance(source, str) and source.startswith(OSS_SCHEME)


def parse_oss_source(source: str) -> OssLocation:
    """Read ``oss://bucket/.../<version>/`` (the trailing '/' is optional); raise :class:`ModelLayoutError`
    naming ``model_source`` and the fix."""
    import re

    rest = source[len(OSS_SCHEME) :] if is_oss_uri(source) else ""
    bucket, _, key = rest.partition("/")
    if not re.match(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", bucket):
        raise ModelLayoutError(
            f"model_source {source!r}: {bucket!r} is not an OSS bucket name (3-63 lower-case letters, digits and"
            f" '-'): {OSS_SOURCE_FIX}"
        )
    parts = [p for p in key.split("/") if p]
    if any(p in (".", "..") for p in parts) or "//" in key.rstrip("/"):
        raise ModelLayoutError(f"model_source {source!r}: no empty, '.' or '..' path segments: {OSS_SOURCE_FIX}")
    if not parts or not parts[-1].isdigit():
        raise ModelLayoutError(
            f"model_source {source!r} does not end in a numeric version folder (TF Serving loads only"
            f" <model>/<number>/): {OSS_SOURCE_FIX}"
        )
    return OssLocation(bucket, "/".join(parts) + "/", int(parts[-1]))


def remote_saved_model_problems(location: OssLocation, relative_keys: set[str]) -> list[str]:
    """What keeps the OSS folder (its object keys relative to the version folder) from being a loadable
    SavedModel: the same rules as :func:`saved_model_problems` for a local directory."""
    where = location.uri
    if not relative_keys:
        return [f"model_source {where!r}: no objects under it in bucket {location.bucket!r}: {OSS_SOURCE_FIX}"]
    problems: list[str] = []
    if not any(name in relative_keys for name in SAVED_MODEL_FILES):
        found = sorted(relative_keys)[:5]
        problems.append(
            f"model_source {where!r}: no saved_model.pb (or saved_model.pbtxt) directly under it (found {found}):"
            f" {OSS_SOURCE_FIX}; export with model.export(dir) / tf.saved_model.save(model, dir)"
        )
    if "variables/variables.index" not in relative_keys:
        problems.append(f"model_source {where!r}: variables/variables.index is missing beside saved_model.pb")
    if not any(k.startswith("variables/variables.data-") for k in relative_keys):
        problems.append(f"model_source {where!r}: no variables/variables.data-* shard")
    return problems
