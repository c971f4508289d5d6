"""ModelUploadOperator through the real oss2 SDK against the sandbox's OSS stand-in.

The SavedModel is a small fake (arbitrary bytes in TF Serving's layout): the upload does not read the model.
"""

from __future__ import annotations

import os
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from elastic_inference.exceptions import ModelLayoutError
from elastic_inference.hooks.oss import OssHook
from elastic_inference.operators.model_upload import ModelUploadOperator
from tests.integration.support import FAST_RETRY, connection, sandbox_conn

pytestmark = pytest.mark.integration

KIB = 1024


@pytest.fixture
def oss_conn(sandbox) -> Iterator[str]:
    conn = sandbox_conn(sandbox)
    conn["extra"] = {**conn["extra"], **FAST_RETRY}
    with connection("alibaba_oss_upload", conn) as conn_id:
        yield conn_id


def fake_saved_model(root: Path, data_size: int = 3 * KIB) -> Path:
    """saved_model.pb + variables/{variables.index, variables.data-00000-of-00001}: 3 files."""
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(os.urandom(2 * KIB))
    (root / "variables" / "variables.index").write_bytes(os.urandom(300))
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(data_size))
    return root


def op(conn_id: str, source: Path, bucket: str, tmp_path: Path, **kw) -> ModelUploadOperator:
    return ModelUploadOperator(
        task_id="upload",
        ack_conn_id=conn_id,
        source=str(source),
        bucket=bucket,
        prefix="models",
        model_name="fashion-mnist",
        checkpoint_dir=str(tmp_path / "ckpt"),
        **kw,
    )


def test_upload_three_files_then_rerun_uploads_nothing(oss_conn, tmp_path):
    model = fake_saved_model(tmp_path / "export")
    bucket = "models-" + secrets.token_hex(4)
    first = op(oss_conn, model, bucket, tmp_path, version=3, create_bucket=True).execute({})
    total = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    assert first["model_uri"] == f"oss://{bucket}/models/fashion-mnist/"
    assert first["version_uri"] == f"oss://{bucket}/models/fashion-mnist/3/"
    assert sorted(first["objects"]) == sorted(
        f"oss://{bucket}/models/fashion-mnist/3/{k}"
        for k in ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001")
    )
    assert (first["bytes_uploaded"], first["bytes_skipped"], first["files_uploaded"]) == (total, 0, 3)

    hook = OssHook(oss_conn)
    assert hook.get_object(bucket, "models/fashion-mnist/3/saved_model.pb") == (model / "saved_model.pb").read_bytes()

    again = op(oss_conn, model, bucket, tmp_path, version=3).execute({})
    assert (again["bytes_uploaded"], again["bytes_skipped"], again["files_uploaded"]) == (0, total, 0)

    # One file changed: only that file moves.
    (model / "saved_model.pb").write_bytes(os.urandom(2 * KIB))
    third = op(oss_conn, model, bucket, tmp_path, version=3).execute({})
    assert (third["files_uploaded"], third["bytes_uploaded"]) == (1, 2 * KIB)


def test_interrupted_multipart_upload_resumes_with_the_missing_parts(oss_conn, tmp_path):
    part = 100 * KIB  # OSS's minimum part size
    model = fake_saved_model(tmp_path / "export", data_size=4 * part + 17)
    data_file = model / "variables" / "variables.data-00000-of-00001"
    bucket = "models-" + secrets.token_hex(4)
    hook = OssHook(oss_conn)
    hook.create_bucket(bucket)
    key = "models/fashion-mnist/1/variables/variables.data-00000-of-00001"
    ckpt = tmp_path / "ckpt"

    class Interrupt(Exception):
        pass

    def stop_after_two_parts(consumed: int, _total: int | None) -> None:
        if consumed >= 2 * part:  # oss2 reports the finished bytes before each next part
            raise Interrupt

    with pytest.raises(Interrupt):
        hook.upload_file(
            bucket,
            key,
            data_file,
            checkpoint_dir=ckpt,
            multipart_threshold=2 * part,
            part_size=part,
            progress_callback=stop_after_two_parts,
        )
    assert hook.head_object(bucket, key) is None  # not completed
    assert hook.pending_multipart_bytes(bucket, key, data_file, ckpt) == 2 * part  # ListParts on the server

    result = op(oss_conn, model, bucket, tmp_path, multipart_threshold=2 * part, part_size=part).execute({})
    small = (model / "saved_model.pb").stat().st_size + (model / "variables" / "variables.index").stat().st_size
    assert result["bytes_uploaded"] == small + (data_file.stat().st_size - 2 * part)
    assert hook.get_object(bucket, key) == data_file.read_bytes()
    remote = hook.head_object(bucket, key)
    assert remote.etag.endswith("-5")  # one multipart object of 5 parts: the 2 old ones were reused
    assert hook.pending_multipart_bytes(bucket, key, data_file, ckpt) == 0  # checkpoint removed on completion


def test_missing_saved_model_pb_fails_before_any_upload(oss_conn, tmp_path):
    model = fake_saved_model(tmp_path / "export")
    (model / "saved_model.pb").unlink()
    bucket = "models-" + secrets.token_hex(4)
    with pytest.raises(ModelLayoutError, match="saved_model.pb"):
        op(oss_conn, model, bucket, tmp_path, create_bucket=True).execute({})
    assert not OssHook(oss_conn).bucket_exists(bucket)  # not even the bucket was touched


def test_versioned_directory_and_archive(oss_conn, tmp_path):
    root = tmp_path / "versions"
    fake_saved_model(root / "1")
    fake_saved_model(root / "2")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root, arcname="fashion-mnist")
    bucket = "models-" + secrets.token_hex(4)
    result = op(oss_conn, archive, bucket, tmp_path, create_bucket=True).execute({})
    assert result["versions"] == [1, 2]
    assert result["version_uri"].endswith("/fashion-mnist/2/")
    assert len(result["objects"]) == 6
    again = op(oss_conn, archive, bucket, tmp_path).execute({})
    assert again["bytes_uploaded"] == 0 and again["files_skipped"] == 6


def test_missing_bucket_needs_create_bucket(oss_conn, tmp_path):
    model = fake_saved_model(tmp_path / "export")
    with pytest.raises(ModelLayoutError, match="create_bucket=True"):
        op(oss_conn, model, "models-" + secrets.token_hex(4), tmp_path).execute({})
