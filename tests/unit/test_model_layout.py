"""Model layout validation and archive handling (local files only)."""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from elastic_inference.exceptions import ModelLayoutError
from elastic_inference.model_layout import extract_archive, resolve_layout


def saved_model(root: Path) -> Path:
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"pb")
    (root / "variables" / "variables.index").write_bytes(b"i")
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(b"d")
    return root


def test_single_saved_model_defaults_to_version_1(tmp_path):
    layout = resolve_layout(saved_model(tmp_path / "m"))
    assert layout.versions == (1,)
    assert [f.relative_key for f in layout.files] == [
        "1/saved_model.pb",
        "1/variables/variables.data-00000-of-00001",
        "1/variables/variables.index",
    ]


def test_versioned_dir_uploads_all_or_one(tmp_path):
    saved_model(tmp_path / "m" / "1")
    saved_model(tmp_path / "m" / "7")
    (tmp_path / "m" / "notes.txt").write_text("ignored by TF Serving")
    assert resolve_layout(tmp_path / "m").versions == (1, 7)
    assert resolve_layout(tmp_path / "m", version=7).versions == (7,)
    with pytest.raises(ModelLayoutError, match="version 3 not found"):
        resolve_layout(tmp_path / "m", version=3)


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("saved_model.pb", "no saved_model.pb"),
        ("variables/variables.index", "variables.index is missing"),
        ("variables/variables.data-00000-of-00001", "no variables.data-* shard"),
    ],
)
def test_incomplete_saved_models_name_what_is_missing(tmp_path, remove, named):
    root = saved_model(tmp_path / "m" / "1")
    (root / remove).unlink()
    with pytest.raises(ModelLayoutError, match=re.escape(named)):
        resolve_layout(tmp_path / "m")


def test_a_directory_with_neither_layout_is_rejected(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.h5").write_bytes(b"x")
    with pytest.raises(ModelLayoutError, match="no saved_model.pb and no numeric version directories"):
        resolve_layout(tmp_path / "m")


def test_archive_extracts_once_to_a_stable_place(tmp_path):
    saved_model(tmp_path / "src")
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in (tmp_path / "src").rglob("*"):
            zf.write(p, Path("export") / p.relative_to(tmp_path / "src"))
    first = extract_archive(archive, tmp_path / "work")
    second = extract_archive(archive, tmp_path / "work")
    assert first == second and first.name == "export"
    assert resolve_layout(first).versions == (1,)


def test_archive_path_traversal_is_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ModelLayoutError, match="cannot extract"):
        extract_archive(archive, tmp_path / "work")
    assert not (tmp_path / "outside.txt").exists()
