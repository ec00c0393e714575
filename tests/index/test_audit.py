"""The gallery audit on small generated galleries with planted defects, on every index type.

Each kind of finding is planted once in 40 identities of 8 clustered vectors (dimension 32): a
file copied under another identity, a near-identical copy, an item filed under the wrong
identity, an identity split under two names and two identities merged under one. The audit must
find each, name the identities, and find nothing in a gallery left as generated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from siamese.cli import app
from siamese.core.errors import GalleryError
from siamese.index import GalleryWriter, RecallPolicy
from siamese.index.audit import AuditReport, audit

DIM = 32
QUICK = RecallPolicy(queries=100)


def _gallery(
    folder: Path,
    vectors: np.ndarray,
    identities: list[str],
    hashes: list[str],
    index_type: str = "Flat",
    search_params: dict[str, int] | None = None,
) -> Path:
    with GalleryWriter.create(
        folder,
        dimension=vectors.shape[1],
        model_fingerprint="0" * 64,
        model_path="none.onnx",
        index_type=index_type,
    ) as writer:
        paths = [f"items/{identity}/{n}.png" for n, identity in enumerate(identities)]
        writer.stage_embeddings(vectors, paths, identities, hashes)
        writer.publish(search_params=search_params, recall=QUICK)
    return folder


def _clean(seed: int = 0, identities: int = 40, per: int = 8) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, DIM))
    owners = np.repeat(np.arange(identities), per)
    vectors = centres[owners] + 0.35 * rng.normal(size=(len(owners), DIM))
    return vectors.astype(np.float32), [f"id{o:02d}" for o in owners]


def planted(seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """The clean gallery plus one defect of each kind (see the module's docstring)."""
    vectors, names = _clean(seed)
    rng = np.random.default_rng(seed + 1)
    hashes = [f"{n:064x}" for n in range(len(names))]
    centre_3 = vectors[names.index("id03") : names.index("id03") + 8].mean(axis=0)
    extra = [
        (vectors[0], "id05", hashes[0]),  # a copy of id00's first file under id05
        (vectors[10] + 0.01 * rng.normal(size=DIM), "id01", "f" * 64),  # re-encoded copy
        (centre_3 + 0.35 * rng.normal(size=DIM), "id07", "e" * 64),  # id03's photo under id07
    ]
    vectors = np.vstack([vectors, np.stack([v for v, _, _ in extra])]).astype(np.float32)
    names = names + [n for _, n, _ in extra]
    hashes = hashes + [h for _, _, h in extra]
    names = [("id10b" if n == "id10" and i % 2 else n) for i, n in enumerate(names)]  # split
    names = ["id20" if n == "id21" else n for n in names]  # merged
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, names, hashes


@pytest.fixture(scope="module")
def planted_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vectors, names, hashes = planted()
    return _gallery(tmp_path_factory.mktemp("audit") / "gallery", vectors, names, hashes)


def _check_planted(report: AuditReport) -> None:
    found = report.findings
    assert [f.identities for f in found["exact_duplicate"]] == [["id00", "id05"]]
    assert report.totals["exact_duplicate"] == 1
    near = found["near_duplicate"]
    assert len(near) == 1 and near[0].identities == ["id01"] and near[0].size == 2
    assert near[0].items[1].distance < report.calibration.duplicate_distance
    wrong = found["mislabel"]
    assert len(wrong) == 1
    assert wrong[0].identities[0] == "id07" and wrong[0].suggested_identity == "id03"
    assert wrong[0].items[0].path.endswith(f"/{len(planted()[1]) - 1}.png")
    assert [f.identities for f in found["overlap"]] == [["id10", "id10b"]]
    assert [f.identities for f in found["loose"]] == [["id20"]]


def test_each_planted_defect_is_found_once(planted_gallery: Path) -> None:
    report = audit(planted_gallery)
    _check_planted(report)
    assert report.calibration.identity_source.startswith("calibrated")
    assert 0 < report.calibration.duplicate_distance < report.calibration.identity_distance
    payload = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # strict JSON
    assert payload["totals"]["mislabel"] == 1
    assert payload["findings"]["mislabel"][0]["details"]["own_identity_distance"] is None


@pytest.mark.parametrize(
    ("index_type", "params"),
    [
        ("HNSW16", {"efSearch": 64}),
        ("IVF8,Flat", {"nprobe": 8}),
        ("ondisk:IVF8,Flat", {"nprobe": 8}),
    ],
)
def test_every_index_type_finds_the_same(
    tmp_path: Path, index_type: str, params: dict[str, int]
) -> None:
    vectors, names, hashes = planted()
    folder = _gallery(tmp_path / "g", vectors, names, hashes, index_type, params)
    _check_planted(audit(folder))


def test_given_distances_and_the_stored_threshold_win(
    planted_gallery: Path, tmp_path: Path
) -> None:
    from siamese.index import Gallery

    report = audit(planted_gallery, duplicate_distance=1e-6, identity_distance=0.05)
    assert report.calibration.duplicate_source == "given"
    assert report.totals["near_duplicate"] == 0
    assert report.calibration.identity_distance == 0.05
    copy = Path(tmp_path / "g")
    import shutil

    shutil.copytree(planted_gallery, copy)
    Gallery.set_threshold(copy, 0.123)
    assert audit(copy).calibration.identity_source == "the gallery's stored threshold"
    with pytest.raises(GalleryError, match="duplicate distance must be a positive"):
        audit(planted_gallery, duplicate_distance=-1.0)
    with pytest.raises(GalleryError, match="not found"):
        audit(tmp_path / "nothing")


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    count=st.integers(1, 60),
    identities=st.integers(1, 8),
    seed=st.integers(0, 10_000),
    index_type=st.sampled_from(["Flat", "HNSW8"]),
)
def test_an_unchanged_gallery_has_no_exact_duplicates(
    tmp_path_factory: pytest.TempPathFactory,
    count: int,
    identities: int,
    seed: int,
    index_type: str,
) -> None:
    """Content hashes as a build records them (of each file's bytes): no file twice, no group."""
    import hashlib

    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, 8)).astype(np.float32)
    names = [f"p{int(i)}" for i in rng.integers(0, identities, count)]
    hashes = [hashlib.sha256(v.tobytes()).hexdigest() for v in vectors]
    folder = _gallery(tmp_path_factory.mktemp("h") / "g", vectors, names, hashes, index_type)
    report = audit(folder)
    assert report.totals["exact_duplicate"] == 0 and not report.findings["exact_duplicate"]
    ids = {int(i) for i in range(1, count + 1)}
    for found in report.findings.values():
        for finding in found:
            assert {item.id for item in finding.items} <= ids
            assert finding.items[0].distance == 0.0


def test_cli_json_and_sheets(planted_gallery: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "index",
            "audit",
            "--gallery",
            str(planted_gallery),
            "--json",
            "--sheets",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["totals"] == {
        "exact_duplicate": 1,
        "near_duplicate": 1,
        "mislabel": 1,
        "overlap": 1,
        "loose": 1,
    }
    sheet = Path(payload["findings"]["mislabel"][0]["sheet"])
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = runner.invoke(app, ["index", "audit", str(planted_gallery)])
    assert table.exit_code == 0 and "mislabel" in table.stdout and "id03" in table.stdout
    missing = runner.invoke(app, ["index", "audit", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    bad = ["index", "audit", str(planted_gallery), "--identity-distance", "-1"]
    refused = runner.invoke(app, bad)
    assert refused.exit_code == 1 and "identity distance must be a positive" in refused.output


def test_calibrated_threshold_answers_strangers_unknown(
    planted_gallery: Path, tmp_path: Path
) -> None:
    """The demo's calibration: the threshold stored is the audit's stranger threshold."""
    import shutil

    from siamese.index import Gallery
    from siamese.index.audit import calibrate_threshold

    folder = Path(shutil.copytree(planted_gallery, tmp_path / "g"))
    record = calibrate_threshold(folder, stranger_accept_rate=0.05)
    assert record["source"].startswith("calibrated on the gallery's own items")
    assert Gallery.facts(folder)["threshold"]["distance"] == record["distance"]
    strangers, _ = _clean(seed=99, identities=20, per=1)  # other centres: nobody enrolled
    strangers /= np.linalg.norm(strangers, axis=1, keepdims=True)
    with Gallery.open(folder) as gallery:
        answers = gallery.search(strangers, k=3)
        stored = gallery.items.vectors(np.arange(1, 321), DIM).reshape(40, 8, DIM)
        # another photo of an enrolled person: the mean of three of theirs, not itself enrolled
        photos = stored[:, :3].mean(axis=1)
        photos /= np.linalg.norm(photos, axis=1, keepdims=True)
        enrolled = gallery.search(photos, k=3)
    assert np.mean([a.unknown for a in answers]) >= 0.8
    assert np.mean([not a.unknown for a in enrolled]) >= 0.8
    with pytest.raises(GalleryError, match="stranger accept rate"):
        calibrate_threshold(folder, stranger_accept_rate=1.5)
