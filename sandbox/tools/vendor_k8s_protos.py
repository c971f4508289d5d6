"""Regenerate the sandbox's Kubernetes protobuf descriptors (``ack_sandbox/k8s/k8s_descriptors.pb.gz``).

kubectl's typed commands (``kubectl create configmap|secret|deployment|job ...``, ``kubectl auth can-i``) send
``application/vnd.kubernetes.protobuf`` bodies. The sandbox decodes them with Google's ``protobuf`` runtime over
a FileDescriptorSet compiled from the Kubernetes ``generated.proto`` files. No Python package ships those
definitions, so this script takes them from the Kubernetes source Debian distributes (the ``orig`` tarball of
bookworm's ``kubernetes`` source package, release 1.20.2, Apache-2.0), checks its sha256, extracts
``staging/src/k8s.io/api/**/generated.proto`` and ``staging/src/k8s.io/apimachinery/pkg/**/generated.proto``,
adds this project's own messages for the kinds newer than 1.20 (``sandbox/tools/k8s_protos``: batch/v1 CronJob,
authentication/v1 SelfSubjectReview) and compiles everything with grpcio-tools' bundled protoc
(``--include_imports --descriptor_set_out``), gzipped, with gnostic's ``OpenAPIv2.proto`` (vendored in the same
tarball) for ``/openapi/v2``; and the patch metadata of ``api/openapi-spec/swagger.json`` into
``k8s_patch_meta.json.gz``. Only these derived files are committed, not the .proto files or the spec.

    .venv/bin/python sandbox/tools/vendor_k8s_protos.py                      # downloads the tarball
    .venv/bin/python sandbox/tools/vendor_k8s_protos.py --tarball /tmp/k8s-orig.tar.gz

The output is deterministic (sorted inputs, gzip mtime 0), so a rerun over the same tarball changes nothing.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

URL = "http://deb.debian.org/debian/pool/main/k/kubernetes/kubernetes_1.20.5+really1.20.2.orig.tar.gz"
SHA256 = "b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc"
TOP = "kubernetes-1.20.2/"
# Where each tarball subtree lands on protoc's include path (the import paths the files use).
ROOTS = {
    TOP + "staging/src/k8s.io/api/": "k8s.io/api/",
    TOP + "staging/src/k8s.io/apimachinery/pkg/": "k8s.io/apimachinery/pkg/",
}
SKIP = ("/testapigroup/",)  # apimachinery's test fixtures, not an API group
# The OpenAPI v2 document message kubectl reads /openapi/v2 as (gnostic; gnostic-models keeps its numbers).
GNOSTIC = TOP + "vendor/github.com/googleapis/gnostic/openapiv2/OpenAPIv2.proto"
# The apiserver's own OpenAPI v2 spec of the release: its x-kubernetes-patch-* / list-type extensions, which
# kubectl's client-side apply reads from /openapi/v2 (the client models the sandbox's schemas come from lack them).
SWAGGER = TOP + "api/openapi-spec/swagger.json"
HERE = Path(__file__).resolve().parent
OWN = HERE / "k8s_protos"
OUT = HERE.parent / "ack_sandbox" / "k8s" / "k8s_descriptors.pb.gz"
PATCH_META_OUT = HERE.parent / "ack_sandbox" / "k8s" / "k8s_patch_meta.json.gz"


def fetch(tarball: Path | None, work: Path) -> Path:
    """The tarball, downloaded unless given, refused unless its sha256 is the one pinned here."""
    if tarball is None:
        tarball = work / "kubernetes.orig.tar.gz"
        with urllib.request.urlopen(URL, timeout=120) as resp, tarball.open("wb") as out:  # noqa: S310 (pinned URL)
            shutil.copyfileobj(resp, out)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{tarball}: sha256 {digest}, expected {SHA256}")
    return tarball


def extract(tarball: Path, include: Path) -> tuple[list[str], dict[str, Any]]:
    """The generated.proto files under ROOTS (+ gnostic's), written to ``include`` by import path; returns those
    paths and the swagger spec's patch metadata (definition → property → its x-kubernetes-* extensions)."""
    names: list[str] = []
    meta: dict[str, Any] = {}
    with tarfile.open(tarball) as tar:
        for member in tar:
            if member.name in (GNOSTIC, SWAGGER):
                src = tar.extractfile(member)
                assert src is not None
                if member.name == SWAGGER:
                    meta = patch_meta(json.load(src))
                else:
                    (include / "openapiv2").mkdir(parents=True, exist_ok=True)
                    (include / "openapiv2" / "OpenAPIv2.proto").write_bytes(src.read())
                    names.append("openapiv2/OpenAPIv2.proto")
                continue
            if not member.isfile() or not member.name.endswith("/generated.proto"):
                continue
            if any(s in member.name for s in SKIP):
                continue
            for prefix, target in ROOTS.items():
                if member.name.startswith(prefix):
                    rel = target + member.name[len(prefix) :]
                    dest = include / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None
                    dest.write_bytes(src.read())
                    names.append(rel)
    for own in sorted(OWN.rglob("*.proto")):
        rel = own.relative_to(OWN).as_posix()
        (include / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(own, include / rel)
        names.append(rel)
    return sorted(names), meta


def patch_meta(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, schema in sorted(spec.get("definitions", {}).items()):
        for prop, ps in sorted((schema.get("properties") or {}).items()):
            ext = {
                k: v for k, v in ps.items() if k.startswith("x-kubernetes-") and k != "x-kubernetes-group-version-kind"
            }
            if ext:
                out.setdefault(name, {})[prop] = ext
    return out


def compile_set(include: Path, names: list[str]) -> bytes:
    import grpc_tools
    from grpc_tools import protoc

    out = include / "descriptors.pb"
    wkt = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/any.proto, which gnostic imports
    rc = protoc.main(
        ["protoc", f"-I{include}", f"-I{wkt}", "--include_imports", f"--descriptor_set_out={out}", *names]  # type: ignore[list-item]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc})")
    return out.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help="a local copy of the tarball (else it is downloaded)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tarball = fetch(args.tarball, work)
        include = work / "include"
        names, meta = extract(tarball, include)
        data = compile_set(include, names)
    args.out.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    PATCH_META_OUT.write_bytes(gzip.compress(json.dumps(meta, sort_keys=True).encode(), compresslevel=9, mtime=0))
    print(f"{args.out}: {len(names)} files, {len(data)} bytes of descriptors", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
