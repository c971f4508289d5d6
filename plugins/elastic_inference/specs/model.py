"""The model to deploy: where it is on the worker and where it goes in OSS."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from elastic_inference.specs._base import Spec, spec_field

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_LABEL_HINT = (
    "a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, "
    "at most 63 characters"
)
OSS_BUCKET = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"


@dataclasses.dataclass(frozen=True)
class ModelSpec(Spec):
    """A SavedModel (directory or archive) and its place ``oss://<bucket>/<prefix>/<name>/<version>/``."""

    source: str = spec_field(
        "",
        "string",
        param="model_source",
        doc="Local SavedModel directory or .tar.gz/.zip archive, or a version folder already in OSS "
        "(oss://bucket/prefix/model/<version>/: copied inside OSS, never through the worker). Empty: the path "
        "the model Asset event carries.",
    )
    name: str = spec_field(
        "fashion-mnist",
        "string",
        param="model_name",
        pattern=DNS_LABEL,
        hint=DNS_LABEL_HINT,
        doc="Model name: TF Serving model_name and the OSS directory (a DNS label).",
    )
    version: int = spec_field(
        1, "integer", param="model_version", minimum=1, doc="Numeric version directory TF Serving loads."
    )
    bucket: str = spec_field(
        "models",
        "string",
        pattern=OSS_BUCKET,
        hint="an OSS bucket name: 3-63 lower-case letters, digits and '-', starting and ending with a letter or digit",
        doc="OSS bucket holding the models.",
    )
    prefix: str = spec_field(
        "models",
        "string",
        pattern=r"^[A-Za-z0-9._/-]*$",
        hint="a key prefix of letters, digits, '.', '_', '-' and '/'",
        doc="Key prefix inside the bucket.",
    )
    samples_path: str = spec_field(
        "", "string", doc="Labelled test images (.json/.npz); empty: samples.json beside the model."
    )

    label_prefix: ClassVar[str] = ""  # its fields are top-level params

    @property
    def in_oss(self) -> bool:
        from elastic_inference.model_layout import is_oss_uri

        return is_oss_uri(self.source)

    @property
    def resolved_samples_path(self) -> str:
        if self.in_oss:
            return self.samples_path
        return self.samples_path or str(Path(self.source).parent / "samples.json")

    def with_source_version(self) -> ModelSpec:
        """An ``oss://.../<version>/`` source names its version: that is the version served (``model_version`` is
        for a local SavedModel without one)."""
        from elastic_inference.exceptions import ModelLayoutError
        from elastic_inference.model_layout import parse_oss_source

        if not self.in_oss:
            return self
        try:
            version = parse_oss_source(self.source).version
        except ModelLayoutError:
            return self  # problems() names it
        return dataclasses.replace(self, version=version) if version >= 1 else self

    def problems(self) -> list[str]:
        p = super().problems()
        if self.in_oss:
            return p + oss_source_problems(self)
        if not self.source:
            p.append(
                "model_source is empty and no model Asset event supplied one: pass the path of a SavedModel "
                "directory or archive"
            )
        elif not Path(self.source).exists():
            p.append(f"model_source {self.source!r} does not exist on the worker")
        else:
            p.extend(layout_problems(Path(self.source), self.version))
        return p


def oss_source_problems(spec: ModelSpec) -> list[str]:
    """The checks of an ``oss://`` source that need no network (the layout itself is listed in ``plan``'s
    preflight, ``elastic_inference.preflight.oss_source_problems``)."""
    from elastic_inference.exceptions import ModelLayoutError
    from elastic_inference.model_layout import parse_oss_source

    out: list[str] = []
    try:
        location = parse_oss_source(spec.source)
        if location.version < 1:
            out.append(f"model_source {spec.source!r}: version folder 0 - TF Serving versions served here start at 1")
    except ModelLayoutError as exc:
        out.append(str(exc))
    if not spec.samples_path:
        out.append(
            "samples_path is empty: with an oss:// model_source give the labelled test images (.json/.npz) on the "
            "worker (they are not read from beside a model in OSS)"
        )
    elif not Path(spec.samples_path).exists():
        out.append(f"samples_path {spec.samples_path!r} does not exist on the worker")
    return out


def layout_problems(source: Path, version: int | None) -> list[str]:
    """What keeps ``source`` from being a model TF Serving loads, checked without copying or extracting it: a
    directory through ``model_layout.resolve_layout``; an archive by its member names."""
    from elastic_inference.exceptions import ModelLayoutError
    from elastic_inference.model_layout import ARCHIVE_SUFFIXES, is_archive, resolve_layout

    fix = (
        " - give a SavedModel directory (saved_model.pb + variables/), a directory of <version>/ SavedModels,"
        f" or a {'/'.join(ARCHIVE_SUFFIXES)} archive of either"
    )
    if is_archive(source):
        try:
            names = _archive_names(source)
        except (OSError, ValueError) as exc:
            return [f"model_source {str(source)!r} cannot be read as an archive ({exc}){fix}"]
        roots = {n.rsplit("/", 1)[0] if "/" in n else "" for n in names if n.rsplit("/", 1)[-1] in _SAVED_MODEL}
        complete = [r for r in roots if f"{r}/variables/variables.index".lstrip("/") in names]
        if not complete:
            return [
                f"model_source {str(source)!r}: the archive holds no complete SavedModel (saved_model.pb with"
                f" variables/variables.index beside it){fix}"
            ]
        return []
    try:
        resolve_layout(source, None)
    except ModelLayoutError as exc:
        return [f"model_source {str(source)!r} is not a model TF Serving can load: {exc}{fix}"]
    return []


_SAVED_MODEL = ("saved_model.pb", "saved_model.pbtxt")


def _archive_names(archive: Path) -> set[str]:
    import tarfile
    import zipfile

    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            return {n.strip("/").removeprefix("./") for n in zf.namelist()}
    try:
        with tarfile.open(archive) as tf:
            return {n.strip("/").removeprefix("./") for n in tf.getnames()}
    except tarfile.TarError as exc:
        raise ValueError(str(exc)) from exc
