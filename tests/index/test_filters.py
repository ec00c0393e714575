"""Search filters: parsing, their three meanings agreeing, and filtered search on every index type.

A filtered search must equal exact search over the matching items only (k of them wherever they
lie), so each index type is checked against brute force on the subset the filter selects.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siamese.index import GalleryWriter
from siamese.index.published import GalleryReader
from siamese.index.search.filters import FIELDS, FilterError, Where, parse_where
from siamese.index.updates.writer import RecallPolicy

from .conftest import clustered_vectors

COUNT, DIM = 240, 12
#: Each index type searched exhaustively enough to be exact (nprobe = nlist, efSearch >= count).
TYPES = {
    "Flat": None,
    "HNSW16": {"efSearch": 512},
    "IVF8,Flat": {"nprobe": 8},
    "ondisk:IVF8,Flat": {"nprobe": 8},
}
IDENTITIES = ["acme-1", "acme-2", "acme_3", "beta-1", "Beta-2", "gamma"]


def _rows(count: int) -> tuple[list[str], list[str], list[str]]:
    paths = [f"photos/{n % 9}/{n}.jpg" for n in range(count)]
    identities = [IDENTITIES[n % len(IDENTITIES)] for n in range(count)]
    hashes = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(count)]
    return paths, identities, hashes


def _build(folder: Path, vectors: np.ndarray, index_type: str, params: dict | None) -> Path:
    paths, identities, hashes = _rows(len(vectors))
    with GalleryWriter.create(
        folder,
        dimension=vectors.shape[1],
        model_fingerprint="0" * 64,
        model_path="none.onnx",
        index_type=index_type,
        search_params=params,
    ) as writer:
        writer.stage_embeddings(vectors, paths, identities, hashes)
        writer.publish(search_params=params, recall=RecallPolicy(measure=False))
        # Removed since the last merge: an on-disk index then searches with its own selector,
        # which the filter's must combine with.
        writer.publish(removed=[3, 4, 50], recall=RecallPolicy(measure=False))
    return folder


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered_vectors(COUNT, DIM, clusters=12, seed=5)


@pytest.fixture(scope="module")
def galleries(vectors: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("filtered")
    return {
        name: _build(root / name.replace(":", "-").replace(",", "-"), vectors, name, params)
        for name, params in TYPES.items()
    }


# ------------------------------------------------------------------------------ strategies
_strings = st.sampled_from(
    [*IDENTITIES, "acme-%", "%-1", "a_me%", "%", "photos/1/%", "photos/_/1%", "", "x\\%", 'q"t']
)


@st.composite
def _predicates(draw: st.DrawFn) -> str:
    field = draw(st.sampled_from(sorted(FIELDS)))
    if FIELDS[field] is int:
        value = lambda: str(draw(st.integers(-5, COUNT + 5)))
        kinds = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
    else:
        if field == "sha256":
            pool = st.sampled_from([hashlib.sha256(str(n).encode()).hexdigest() for n in range(9)])
            text_values = st.one_of(pool, _strings, pool.map(lambda h: h[:3] + "%"))
        else:
            text_values = _strings
        value = lambda: _quoted(draw(text_values), draw(st.booleans()))
        kinds = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "like", "LIKE"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("in", "not in"):
        listed = ", ".join(value() for _ in range(draw(st.integers(0, 4))))
        return f"{field} {kind} [{listed}]"
    return f"{field} {kind} {value()}"


def _quoted(value: str, single: bool) -> str:
    quote = "'" if single else '"'
    return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def _expressions() -> st.SearchStrategy[str]:
    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        joined = st.tuples(
            children, st.sampled_from([" and ", " or ", " && ", " || ", " AND "]), children
        ).map("".join)
        negated = st.tuples(st.sampled_from(["not ", "!", "NOT "]), children).map(
            lambda p: f"{p[0]}({p[1]})"
        )
        return st.one_of(joined, negated, children.map(lambda c: f"({c})"))

    return st.recursive(_predicates(), extend, max_leaves=5)


def _brute_force(
    vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    distances = np.linalg.norm(vectors - query, axis=1)
    order = np.argsort(distances, kind="stable")[:k]
    return distances[order], ids[order]


# ------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("index_type", list(TYPES))
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_expressions(), k=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_filtered_search_is_exact_search_over_the_matching_items(
    galleries: dict[str, Path], vectors: np.ndarray, index_type: str, text: str, k: int, seed: int
) -> None:
    where = parse_where(text)
    assert parse_where(where.expression) == where  # the normalised form reads back the same
    query = vectors[seed % COUNT] + np.random.default_rng(seed).normal(0, 0.2, DIM)
    with GalleryReader.open(galleries[index_type]) as gallery:
        items = gallery.all_items()
        ids = np.array([item.id for item in items], np.int64)
        mask = where.select(items)  # evaluated in numpy; the search selects ids in SQLite
        assert gallery.items.ids_where(*where.sql()).tolist() == ids[mask].tolist()
        distances, found = gallery.nearest(query.astype(np.float32), k, where=text)
    expected_distances, expected_ids = _brute_force(vectors[ids[mask] - 1], ids[mask], query, k)
    assert found.shape == (1, min(k, int(mask.sum())))  # never fewer than k matching items
    assert found[0].tolist() == expected_ids.tolist()
    np.testing.assert_allclose(distances[0], expected_distances, rtol=1e-4, atol=1e-4)


def test_an_approximate_index_short_of_k_is_completed_exactly(
    galleries: dict[str, Path], vectors: np.ndarray
) -> None:
    """IVF probing one list meets few of a rare identity's items: all k still come back."""
    with GalleryReader.open(galleries["IVF8,Flat"], search_params={"nprobe": 1}) as gallery:
        matching = gallery.items.ids_where(*parse_where('identity == "gamma"').sql())
        distances, found = gallery.nearest(vectors[:4], 30, where='identity == "gamma"')
        results = gallery.search(vectors[:4], 3, where='identity like "acme%"')
    assert found.shape == (4, 30) and (found >= 0).all() and np.isin(found, matching).all()
    assert all(np.all(np.diff(row) >= 0) for row in distances)
    assert all(m.identity.startswith("acme") for r in results for m in r.matches)


def test_a_filter_matching_nothing_finds_nothing(galleries: dict[str, Path]) -> None:
    with GalleryReader.open(galleries["Flat"]) as gallery:
        distances, found = gallery.nearest(np.zeros(DIM, np.float32), 5, where="id < 0")
        for _ in range(2):  # a reader keeps each filter's selection: asked again, still right
            for bound in range(1, 40):
                _, below = gallery.nearest(np.zeros(DIM, np.float32), 50, where=f"id <= {bound}")
                assert set(below[0]) == set(range(1, bound + 1)) - {3, 4}
        [result] = gallery.search(np.zeros(DIM, np.float32), 5, where='identity == "nobody"')
    assert found.shape == distances.shape == (1, 0)
    assert result.matches == [] and result.identities == []


def test_the_normalised_expression_is_milvus_syntax() -> None:
    where = parse_where(
        "identity LIKE 'acme-%' && (id >= 10 || NOT path in ['a\"b', \"c\"]) and sha256 not in []"
    )
    assert where.expression == (
        'identity like "acme-%" and (id >= 10 or not path in ["a\\"b", "c"]) and sha256 not in []'
    )
    assert where.fields == {"identity", "id", "path", "sha256"}
    assert isinstance(parse_where(where.expression), Where)


def test_like_is_case_sensitive_and_escapes_its_wildcards() -> None:
    rows = {"identity": ["acme_3", "acme-3", "ACME_3", "acme%3"], "id": [1, 2, 3, 4]}
    assert parse_where('identity like "acme_3"').select(rows).tolist() == [1, 1, 0, 1]
    assert parse_where('identity like "acme\\\\_3"').select(rows).tolist() == [1, 0, 0, 0]
    assert parse_where('identity like "acme\\\\%3"').select(rows).tolist() == [0, 0, 0, 1]
    assert parse_where('identity like "a%"').select(rows).tolist() == [1, 1, 0, 1]


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("", 1, "a condition"),
        ("identity", 9, "an operator"),
        ('identity lik "a"', 10, "an operator"),
        ("identity == 3", 13, "a quoted string"),
        ('id == "7"', 7, "an integer"),
        ('id like "7%"', 4, "an integer comparison"),
        ('colour == "red"', 1, "a field (id, identity, path, sha256)"),
        ('identity == "open', 13, "a closed string"),
        ("(id > 1", 8, "')'"),
        ("id > 1 id > 2", 8, "and, or"),
        ("id = 2", 4, "'=='"),
        ("id in [1, 2", 12, "',' or ']'"),
        ("id in 1", 7, "'['"),
        ("id not 3", 8, "'in' after 'not'"),
        ("id == 1.5", 7, "an integer (id is an integer)"),
        ("id == 99999999999999999999", 7, "an integer within 64 bits"),
        ("id == 1 ; drop table items", 9, "a field, value or operator"),
        ("not", 4, "a field"),
    ],
)
def test_malformed_filters_give_one_line_naming_the_position(
    text: str, position: int, expected: str
) -> None:
    with pytest.raises(FilterError) as caught:
        parse_where(text)
    message = str(caught.value)
    assert "\n" not in message
    assert f"at position {position} expected {expected}" in message, message


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("id ntyl\"'=<>!&|()[],%_-0123456789")), max_size=30))
def test_any_text_parses_or_is_refused_in_one_line(text: str) -> None:
    try:
        where = parse_where(text)
    except FilterError as exc:
        assert "\n" not in str(exc) and "position" in str(exc)
    else:
        assert parse_where(where.expression) == where


# ------------------------------------------------------------------------------ the CLI and service
def test_query_where_on_the_command_line(gallery_dir: Path, unseen_dataset: Path) -> None:
    from typer.testing import CliRunner

    from siamese.cli import app

    image = min((unseen_dataset / "id_002").iterdir())
    args = ["query", str(image), "--gallery", str(gallery_dir), "--json", "-k", "3"]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--where", 'identity in ["id_001", "id_003"]'])
    assert result.exit_code == 0, result.output
    [answer] = json.loads(result.stdout)["results"]
    assert {m["identity"] for m in answer["matches"]} <= {"id_001", "id_003"}
    assert len(answer["matches"]) == 3
    bad = runner.invoke(app, [*args, "--where", 'identity = "id_001"'])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    [line] = bad.stderr.strip().splitlines()
    assert "where" in line and "at position 10 expected '=='" in line


def test_the_service_query_takes_the_same_filter(
    gallery_dir: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from siamese.service import ServiceConfig, ServiceState, create_app

    image = min((unseen_dataset / "id_002").iterdir())
    upload = {"file": (image.name, image.read_bytes(), "application/octet-stream")}
    config = ServiceConfig(gallery_dir=shutil.copytree(gallery_dir, tmp_path / "g"), device="cpu")
    with TestClient(create_app(ServiceState.open(config)), raise_server_exceptions=False) as client:
        plain = client.post("/v1/query?k=4", files=upload).json()
        kept = client.post("/v1/query?k=2", files=upload, data={"where": 'identity != "id_002"'})
        batch = client.post(
            "/v1/query/batch?k=2", files=[("files", upload["file"])], data={"where": "id < 0"}
        )
        bad = client.post("/v1/query", files=upload, data={"where": "id like 3"})
    ranked = [i["identity"] for i in plain["identities"]]
    assert ranked[0] == "id_002" and len(ranked) == 4
    assert kept.status_code == 200, kept.text
    assert [i["identity"] for i in kept.json()["identities"]] == ranked[1:3]
    assert batch.status_code == 200 and batch.json()["results"][0]["matches"] == []
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_filter"
    assert "position 4" in bad.json()["error"]["message"]
