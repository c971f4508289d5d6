"""Renders the Kubernetes manifests in ``include/manifests/*.j2`` into objects.

Users override a template by putting a file of the same name in a directory they pass as
``template_dir`` (or ``ELASTIC_INFERENCE_MANIFESTS_DIR``); it is searched before the defaults.
Rendering is strict: a variable the template uses but nobody supplied is an error naming it.
Credentials are never template variables: the OSS Secret is built in code (see operators/volume.py).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

_PACKAGED = Path(__file__).resolve().parent / "templates"  # wheel: include/manifests is copied here
_REPO = Path(__file__).resolve().parents[2] / "include" / "manifests"  # source checkout / editable install


class ManifestError(ValueError):
    """A manifest template is missing, does not render, or does not parse as Kubernetes objects."""


def default_template_dirs() -> list[Path]:
    dirs = []
    if env := os.environ.get("ELASTIC_INFERENCE_MANIFESTS_DIR"):
        dirs.append(Path(env))
    dirs.extend(d for d in (_PACKAGED, _REPO) if d.is_dir())
    return dirs


@lru_cache(maxsize=8)
def _environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(search_path)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # YAML, not HTML  # noqa: S701
    )


def render_text(template: str, variables: dict[str, Any], template_dir: str | Path | None = None) -> str:
    search = ([str(template_dir)] if template_dir else []) + [str(d) for d in default_template_dirs()]
    try:
        return _environment(tuple(search)).get_template(template).render(**variables)
    except jinja2.TemplateNotFound as exc:
        raise ManifestError(f"manifest template {template!r} not found in {search}") from exc
    except jinja2.UndefinedError as exc:
        raise ManifestError(f"manifest template {template!r}: {exc.message}; pass it to the operator") from exc


def parse_objects(text: str, source: str = "manifest") -> list[dict[str, Any]]:
    """YAML documents → Kubernetes objects, each checked for apiVersion/kind/metadata.name."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source} is not valid YAML: {exc}") from exc
    for i, doc in enumerate(docs):
        missing = [k for k in ("apiVersion", "kind") if not isinstance(doc, dict) or not doc.get(k)]
        if missing or not (doc.get("metadata") or {}).get("name"):
            raise ManifestError(f"{source} document {i} lacks {missing or ['metadata.name']}")
    return docs


def render(template: str, variables: dict[str, Any], template_dir: str | Path | None = None) -> list[dict[str, Any]]:
    return parse_objects(render_text(template, variables, template_dir), source=template)


def sls_ingress_route(namespace: str, service: str, port: int) -> str:
    """The ``sls.ingress.route`` label value: ingress-nginx's ``$proxy_upstream_name`` (``<ns>-<svc>-<port>``)."""
    return f"{namespace}-{service}-{port}"


def seldon_predictor_service(sdep: str, predictor: str) -> str:
    """Service Seldon v1 creates for a predictor (REST on 8000)."""
    return f"{sdep}-{predictor}"


def seldon_deployment_name(sdep: str, predictor: str, containers: list[str], index: int = 0) -> str:
    """Deployment (and HPA) name Seldon v1 derives: ``<sdep>-<predictor>-<i>-<containers joined by '-'>``."""
    return f"{sdep}-{predictor}-{index}-{'-'.join(containers)}"
