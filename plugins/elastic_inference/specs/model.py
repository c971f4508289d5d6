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
        doc="Local SavedModel directory or .tar.gz/.zip archive. Empty: the path the training "
        "DAG's model Asset event carries.",
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
    def resolved_samples_path(self) -> str:
        return self.samples_path or str(Path(self.source).parent / "samples.json")

    def problems(self) -> list[str]:
        p = super().problems()
        if not self.source:
            p.append(
                "model_source is empty and no model Asset event supplied one: pass the path of a SavedModel "
                "directory or archive"
            )
        elif not Path(self.source).exists():
            p.append(f"model_source {self.source!r} does not exist on the worker")
        return p
