"""Gallery audit: precision and recall of each finding kind on galleries with planted defects,
and the audit's time at 10^5 and 10^6 items.

    siamese bench gallery_audit [--quick] [-O datasets=att-faces,grocery] [-O sizes=1e5,1e6]
        [-O dim=128] [-O k=10] [-O model=features,MODEL.onnx,...]

Defects are planted as files, then the gallery is built as users build one (``Gallery.build``
with each model of ``-O model=``: ``features``, ImageNet EfficientNet-Lite0's pooled features at
128 px through the ONNX engine, not fine-tuned, the default; or a model.onnx, e.g. a tower
trained for such data), and
audited at default settings (``siamese.index.audit.audit``). In a copy of each dataset (one folder
per identity; identities are shuffled with seed 0 and given one role each, so plants never
overlap):

- ``copies``: 5 files copied byte for byte into another identity's folder (exact duplicates
  across identities);
- ``near``: 10 files resized to 80% and re-encoded as JPEG (quality 85), 5 into their own
  identity's folder, 5 into another's (near-duplicates);
- ``relabel``: 10 files moved into another identity's folder (mislabels; the suggested identity
  is checked too);
- ``split``: 3 identities with half their files moved to a new identity ``<name>-split``
  (overlapping identities, to be merged);
- ``merge``: 3 pairs of identities whose files are put under one name (loose identities).

Precision counts a finding as right only when it is a planted defect (a natural duplicate found
in the source files counts as right for exact duplicates; other natural findings count as wrong,
so precision is a lower bound). Recall: planted defects found. Timing: clustered unit vectors
(Gaussian clusters of 10 items, like identities of 10 photos) written through GalleryWriter,
published as IVF with SQ8 codes (about 2·√N lists, as on-disk galleries have; nprobe 8) and, up
to 10^5, also Flat (exact), then audited; ``audit_seconds`` splits reading the items, searching
and the analysis.
Datasets: ``att-faces`` (../shared/data/att_faces: 40 people × 10), ``grocery`` (its 31 unseen
classes), ``synthetic`` (generated identities; the quick run's only dataset).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _datasets import ATT_FACES, GROCERY, grocery, synthetic
from _harness import BenchSettings
from PIL import Image

OPTIONS = ("datasets", "sizes", "dim", "k", "model")
_PLANTS = {"copies": 5, "near": 10, "relabel": 10, "split": 3, "merge": 3}
_FEATURES = "tf_efficientnet_lite0"
#: Lists probed per query of the timing galleries' IVF index.
_NPROBE = 8
_IMAGES = (".png", ".jpg", ".jpeg", ".pgm", ".bmp")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGES)


def _source(name: str, work: Path) -> Path:
    """One folder per identity, the dataset's images inside."""
    if name == "att-faces":
        out = work / "att-all"
        if not out.exists():
            for part in ("training", "testing"):
                for person in (ATT_FACES / part).iterdir():
                    if person.is_dir():
                        shutil.copytree(person, out / person.name, dirs_exist_ok=True)
        return out
    if name == "grocery":
        return grocery(work)[1]
    if name == "synthetic":
        return synthetic(work, 40, 8, seed=7)
    raise ValueError(
        f"bench gallery_audit: unknown dataset {name!r} (att-faces, grocery, synthetic)"
    )


def plant(source: Path, out: Path, seed: int = 0) -> dict[str, Any]:
    """Copy ``source`` into ``out`` with the planted defects; return what was planted where."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out)
    rng = np.random.default_rng(seed)
    names = sorted(p.name for p in out.iterdir() if p.is_dir() and len(_files(p)) >= 4)
    names = [names[i] for i in rng.permutation(len(names))]
    merge = [(names[2 * i], names[2 * i + 1]) for i in range(_PLANTS["merge"])]
    rest = names[2 * _PLANTS["merge"] :]
    split, rest = rest[: _PLANTS["split"]], rest[_PLANTS["split"] :]
    truth: dict[str, Any] = {"copies": [], "near": [], "relabel": [], "split": [], "merge": []}
    for first, second in merge:
        for file in _files(out / second):
            file.rename(out / first / f"merged-{second}-{file.name}")
        (out / second).rmdir()
        truth["merge"].append(first)
    for name in split:
        files = _files(out / name)
        (out / f"{name}-split").mkdir()
        for file in files[: len(files) // 2]:
            file.rename(out / f"{name}-split" / file.name)
        truth["split"].append([name, f"{name}-split"])
    _plant_files(out, rest, rng, truth)
    return truth


def _plant_files(
    out: Path, names: list[str], rng: np.random.Generator, truth: dict[str, Any]
) -> None:
    """Copies, re-encoded copies and moved files, each from a file no other plant touched."""
    used: set[Path] = set()

    def pick(avoid: str | None = None) -> tuple[str, Path, str]:
        while True:
            name, other = (names[i] for i in rng.choice(len(names), 2, replace=False))
            if name == avoid:
                continue
            files = [f for f in _files(out / name) if f not in used]
            if len(files) > 3:
                file = files[int(rng.integers(len(files)))]
                used.add(file)
                return name, file, other

    for n in range(_PLANTS["copies"]):
        name, file, other = pick()
        copy = out / other / f"copy{n}-{file.name}"
        shutil.copyfile(file, copy)
        used.add(copy)
        truth["copies"].append([str(file.resolve()), str(copy.resolve())])
    for n in range(_PLANTS["near"]):
        name, file, other = pick()
        target = name if n % 2 == 0 else other
        copy = out / target / f"near{n}-{file.stem}.jpg"
        with Image.open(file) as image:
            small = image.convert("RGB").resize(
                (max(1, image.width * 4 // 5), max(1, image.height * 4 // 5))
            )
            small.save(copy, "JPEG", quality=85)
        used.add(copy)
        truth["near"].append([str(file.resolve()), str(copy.resolve())])
    for n in range(_PLANTS["relabel"]):
        name, file, other = pick()
        moved = out / other / f"moved{n}-{file.name}"
        file.rename(moved)
        used.add(moved)
        truth["relabel"].append(
            {"path": str(moved.resolve()), "identity": name, "filed_under": other}
        )


def _natural_duplicates(source: Path) -> int:
    """Groups of byte-identical files already in the dataset."""
    seen: dict[str, int] = {}
    for file in source.rglob("*"):
        if file.is_file() and file.suffix.lower() in _IMAGES:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
            seen[digest] = seen.get(digest, 0) + 1
    return sum(1 for n in seen.values() if n > 1)


def _ratio(found: int, total: int) -> float | None:
    return round(found / total, 3) if total else None


def score(report: Any, truth: dict[str, Any], natural_exact: int) -> dict[str, Any]:
    """Precision and recall of each finding kind against the planted defects."""
    findings = report.findings

    def paths(finding: Any) -> set[str]:
        return {str(Path(item.path).resolve()) for item in finding.items}

    exact = findings["exact_duplicate"]
    copies_found = sum(any(set(pair) <= paths(f) for f in exact) for pair in truth["copies"])
    exact_right = sum(any(set(pair) <= paths(f) for pair in truth["copies"]) for f in exact)
    near = findings["near_duplicate"]
    near_found = sum(any(set(pair) <= paths(f) for f in near) for pair in truth["near"])
    near_right = sum(any(set(pair) <= paths(f) for pair in truth["near"]) for f in near)
    relabelled = {r["path"]: r["identity"] for r in truth["relabel"]}
    wrong = findings["mislabel"]
    flagged = {str(Path(f.items[0].path).resolve()): f.suggested_identity for f in wrong}
    mislabel_right = sum(p in relabelled for p in flagged)
    suggested = sum(flagged[p] == relabelled[p] for p in flagged if p in relabelled)
    splits = {frozenset(pair) for pair in truth["split"]}
    overlap_right = sum(frozenset(f.identities) in splits for f in findings["overlap"])
    merged = set(truth["merge"])
    loose_right = sum(f.identities[0] in merged for f in findings["loose"])
    return {
        "exact_duplicate": {
            "planted": len(truth["copies"]),
            "reported": len(exact),
            "precision": _ratio(min(len(exact), exact_right + natural_exact), len(exact)),
            "recall": _ratio(copies_found, len(truth["copies"])),
            "natural_groups": natural_exact,
        },
        "near_duplicate": {
            "planted": len(truth["near"]),
            "reported": len(near),
            "precision": _ratio(near_right, len(near)),
            "recall": _ratio(near_found, len(truth["near"])),
        },
        "mislabel": {
            "planted": len(relabelled),
            "reported": len(wrong),
            "precision": _ratio(mislabel_right, len(wrong)),
            "recall": _ratio(mislabel_right, len(relabelled)),
            "suggested_identity_right": _ratio(suggested, mislabel_right),
        },
        "overlap": {
            "planted": len(splits),
            "reported": len(findings["overlap"]),
            "precision": _ratio(overlap_right, len(findings["overlap"])),
            "recall": _ratio(overlap_right, len(splits)),
        },
        "loose": {
            "planted": len(merged),
            "reported": len(findings["loose"]),
            "precision": _ratio(loose_right, len(findings["loose"])),
            "recall": _ratio(loose_right, len(merged)),
        },
    }


def _near_distances(report: Any, gallery: Any, truth: dict[str, Any]) -> list[float]:
    """Each planted re-encoded copy's distance to its original, over the median same-identity."""
    out = []
    for original, copy in truth["near"]:
        items = gallery.items_at([original, copy])
        if len(items) == 2:
            vectors = gallery.items.vectors(
                np.asarray([i.id for i in items]), gallery.manifest.dimension
            )
            gap = float(np.linalg.norm(vectors[0] - vectors[1]))
            out.append(round(gap / report.calibration.same_identity_median, 4))
    return sorted(out)


def measure_dataset(name: str, work: Path, model: Path, k: int) -> dict[str, Any]:
    from siamese.engine import Embedder
    from siamese.index import Gallery
    from siamese.index.audit import audit

    source = _source(name, work)
    planted = work / f"{name}-planted"
    truth = plant(source, planted)
    gallery_dir = work / f"{name}-gallery"
    shutil.rmtree(gallery_dir, ignore_errors=True)
    started = time.perf_counter()
    built = Gallery.build(planted, Embedder(model, device="cpu"), gallery_dir, progress=False)
    build_seconds = time.perf_counter() - started
    report = audit(gallery_dir, k=k, limit=10**6)
    with Gallery.open(gallery_dir) as gallery:
        near_ratios = _near_distances(report, gallery, truth)
    return {
        "dataset": name,
        "items": built.count,
        "identities": built.identities,
        "build_seconds": round(build_seconds, 1),
        "audit_seconds": report.seconds,
        "calibration": report.calibration.to_dict(),
        "typical_spread": report.typical_spread,
        "scores": score(report, truth, _natural_duplicates(source)),
        "planted_near_distance_over_median_same": near_ratios,
        "planted": {kind: len(v) for kind, v in truth.items()},
    }


def _clustered(size: int, dim: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Unit vectors in Gaussian clusters of 10 (identities), with their identity names."""
    rng = np.random.default_rng([size, dim, seed])
    clusters = max(1, size // 10)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    owners = np.arange(size) % clusters
    vectors = centres[owners] + 0.5 * rng.standard_normal((size, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, [f"c{o}" for o in owners]


def measure_time(size: int, dim: int, index_type: str, k: int, work: Path) -> dict[str, Any]:
    from siamese.index import GalleryWriter, RecallPolicy
    from siamese.index.audit import audit

    folder = work / f"timing-{size}-{index_type.replace(',', '_')}"
    shutil.rmtree(folder, ignore_errors=True)
    vectors, identities = _clustered(size, dim)
    started = time.perf_counter()
    params = {"nprobe": _NPROBE} if index_type.startswith("IVF") else None
    with GalleryWriter.create(
        folder,
        dimension=dim,
        model_fingerprint="0" * 64,
        model_path="generated",
        index_type=index_type,
    ) as writer:
        for start in range(0, size, 100_000):
            stop = min(size, start + 100_000)
            writer.stage_embeddings(
                vectors[start:stop], [f"v/{i}" for i in range(start, stop)], identities[start:stop]
            )
        writer.publish(search_params=params, recall=RecallPolicy(queries=200))
    build = time.perf_counter() - started
    del vectors
    report = audit(folder, k=k)
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "size": size,
        "dim": dim,
        "index_type": index_type,
        "search_params": params,
        "k": k,
        "build_seconds": round(build, 1),
        "audit_seconds": report.seconds,
        "totals": report.totals,
    }


def run(settings: BenchSettings) -> dict[str, Any]:
    """Precision and recall per dataset and finding kind, then timing per gallery size."""
    work = Path(settings.work_dir) / "gallery_audit"
    work.mkdir(parents=True, exist_ok=True)
    k = settings.option("k", 10, int)
    default = "synthetic" if settings.quick else "att-faces,grocery"
    names = [n for n in settings.option("datasets", default).split(",") if n]
    names = [n for n in names if n != "att-faces" or ATT_FACES.is_dir()]
    names = [n for n in names if n != "grocery" or GROCERY.is_dir()]
    sizes = [
        int(float(s))
        for s in settings.option("sizes", "2e4" if settings.quick else "1e5,1e6").split(",")
        if s
    ]
    dim = settings.option("dim", 128, int)
    rows = []
    if names:
        from siamese.export import export_pretrained

        models = [m for m in settings.option("model", "features").split(",") if m]
        for given in models:
            model = (
                export_pretrained(_FEATURES, work / "features.onnx", image_size=128).path
                if given == "features"
                else Path(given)
            )
            for name in names:
                rows.append({"model": given, **measure_dataset(name, work, model, k)})
    timing = []
    for size in sizes:
        lists = max(64, 2 ** round(np.log2(2 * np.sqrt(size))))  # as the on-disk galleries
        if size <= 100_000:
            timing.append(measure_time(size, dim, "Flat", k, work))
        timing.append(measure_time(size, dim, f"IVF{lists},SQ8", k, work))
    return {"datasets": rows, "timing": timing, "plants": _PLANTS}
