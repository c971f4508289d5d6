"""A model that is already in OSS as ``model_source``: its layout checked remotely in ``plan``, then copied
inside OSS (CopyObject / UploadPartCopy, CRC64-checked) or served in place - never through the worker.

Real oss2 against the sandbox's OSS; the "training job" writes its export with its own client.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from elastic_inference.exceptions import SpecError
from elastic_inference.hooks.oss import OssHook
from elastic_inference.operators.model_upload import ModelUploadOperator
from elastic_inference.preflight import oss_source_problems
from elastic_inference.specs.run import plan_run
from tests.helpers import admin
from tests.integration.support import FAST_RETRY, connection, sandbox_conn

pytestmark = pytest.mark.integration

KIB = 1024


@pytest.fixture
def oss_conn(sandbox) -> Iterator[str]:
    conn = sandbox_conn(sandbox)
    conn["extra"] = {**conn["extra"], **FAST_RETRY}
    with connection("alibaba_oss_source", conn) as conn_id:
        yield conn_id


def export(hook: OssHook, bucket: str, prefix: str, data_size: int = 3 * KIB, *, index: bool = True) -> dict:
    """What a training job outside Airflow writes: a SavedModel's three objects under ``prefix``."""
    files = {
        "saved_model.pb": os.urandom(2 * KIB),
        "variables/variables.data-00000-of-00001": os.urandom(data_size),
    }
    if index:
        files["variables/variables.index"] = os.urandom(300)
    for name, data in files.items():
        hook.put_object(bucket, prefix + name, data)
    return files


def upload_op(conn_id: str, source: str, bucket: str, **kw) -> ModelUploadOperator:
    model = {"source": source, "bucket": bucket, "prefix": "models", "name": "fashion-mnist", "version": 4}
    return ModelUploadOperator(task_id="upload", ack_conn_id=conn_id, model=model, create_bucket=True, **kw)


def test_oss_source_is_copied_inside_oss_multipart_crc_checked_and_a_rerun_copies_nothing(sandbox, oss_conn):
    hook = OssHook(oss_conn)
    training, serving = "train-" + secrets.token_hex(4), "serve-" + secrets.token_hex(4)
    hook.create_bucket(training)
    files = export(hook, training, "exports/fashion-mnist/4/", data_size=350 * KIB)
    total = sum(len(d) for d in files.values())

    # Any upload from the worker (PutObject / UploadPart) would meet an armed 503 and fail the task after the
    # hook's retries: the copy must not touch them, so the fault is still fully armed afterwards.
    admin(sandbox, "oss", "POST", "/_sandbox/faults", {"server_error": {"count": 50, "action": "UploadPart"}})
    try:
        first = upload_op(
            oss_conn,
            f"oss://{training}/exports/fashion-mnist/4/",
            serving,
            copy_multipart_threshold=200 * KIB,
            part_size=100 * KIB,
        ).execute({})
        _, armed = admin(sandbox, "oss", "GET", "/_sandbox/faults")
    finally:
        admin(sandbox, "oss", "DELETE", "/_sandbox/faults")
    assert armed["server_error"]["count"] == 50, armed

    assert (first["bytes_uploaded"], first["files_uploaded"]) == (0, 0)
    assert (first["bytes_copied"], first["files_copied"], first["served_in_place"]) == (total, 3, False)
    assert first["version_uri"] == f"oss://{serving}/models/fashion-mnist/4/"
    for name, data in files.items():
        key = "models/fashion-mnist/4/" + name
        assert hook.get_object(serving, key) == data
        assert (
            hook.head_object(serving, key).crc64 == hook.head_object(training, "exports/fashion-mnist/4/" + name).crc64
        )
    big = hook.head_object(serving, "models/fashion-mnist/4/variables/variables.data-00000-of-00001")
    assert big.etag.endswith("-4")  # 350 KiB in 100 KiB UploadPartCopy parts: a multipart object of 4

    again = upload_op(oss_conn, f"oss://{training}/exports/fashion-mnist/4/", serving).execute({})
    assert (again["bytes_copied"], again["files_skipped"], again["bytes_uploaded"]) == (0, 3, 0)


def test_oss_source_already_in_the_serving_folder_is_served_in_place(oss_conn):
    hook = OssHook(oss_conn)
    serving = "serve-" + secrets.token_hex(4)
    hook.create_bucket(serving)
    export(hook, serving, "models/fashion-mnist/4/")
    result = upload_op(oss_conn, f"oss://{serving}/models/fashion-mnist/4/", serving).execute({})
    assert result["served_in_place"] is True
    assert (result["bytes_copied"], result["bytes_uploaded"], result["files_skipped"]) == (0, 0, 3)


def test_a_bad_remote_layout_fails_in_plan_naming_the_field_and_the_fix(oss_conn, tmp_path):
    hook = OssHook(oss_conn)
    bucket = "train-" + secrets.token_hex(4)
    hook.create_bucket(bucket)
    export(hook, bucket, "exports/fashion-mnist/6/", index=False)  # no variables/variables.index
    samples = tmp_path / "samples.json"
    samples.write_text("[]")
    params = {"model_source": f"oss://{bucket}/exports/fashion-mnist/6/", "samples_path": str(samples)}

    with pytest.raises(SpecError) as info:
        plan_run(params, preflight=lambda specs: oss_source_problems(specs.model.source, oss_conn))
    assert info.value.problems == [
        f"model_source 'oss://{bucket}/exports/fashion-mnist/6/': variables/variables.index is missing beside"
        " saved_model.pb"
    ]
    # Fixed by the training job: the same plan passes, and the version served is the folder's number.
    hook.put_object(bucket, "exports/fashion-mnist/6/variables/variables.index", b"index")
    planned = plan_run(params, preflight=lambda specs: oss_source_problems(specs.model.source, oss_conn))
    assert (planned["model"]["version"], planned["serving"]["model_version"]) == (6, 6)

    # A folder without a version number, or a bucket that is not there, fails the same way.
    for source, expected in (
        (f"oss://{bucket}/exports/fashion-mnist/", "does not end in a numeric version folder"),
        ("oss://no-such-bucket-x1/exports/fashion-mnist/1/", "does not exist: fix the bucket name"),
    ):
        with pytest.raises(SpecError, match=expected) as info:
            plan_run(
                {**params, "model_source": source}, preflight=lambda s: oss_source_problems(s.model.source, oss_conn)
            )
        assert all("model_source" in p for p in info.value.problems), info.value.problems
