"""BuildConfig: every choice of a gallery build; `siamese index build`'s options come from it.

A light module (no engine, no FAISS), so the command line is built without loading either; the
build itself is :func:`siamese.galleries.build_with_engine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from siamese.core.config_fields import setting

#: Ray options: given with the local engine they are a mistake, not a no-op.
RAY_ONLY = ("address", "actors", "cpus_per_actor", "gpus_per_actor")


@dataclass(frozen=True)
class BuildConfig:
    """Options of ``siamese index build`` (the gallery folder itself is given apart)."""

    #: ``siamese index build --help`` groups the options in these panels.
    PANELS: ClassVar[dict[str, tuple[str, ...]]] = {
        "Index": ("index", "max_memory", "min_recall", "target_recall", "nprobe", "ef_search"),
        "Embedding": ("engine", "device", "batch_size", "commit_every", "report_path"),
        "Ray engine": ("address", "actors", "cpus_per_actor", "gpus_per_actor", "part_size"),
    }

    image_dir: str = setting(
        help="Gallery images: one sub-folder per identity (or loose files, one identity each), "
        "or a .csv/.parquet list with columns path and identity (relative paths against the "
        "list's folder; the gallery then holds exactly what it names), or a folder from "
        "`siamese index export` (its vectors are taken as they are, ids kept; the model must be "
        "the one that made them).",
        argument=True,
    )
    model: str = setting(help="model.onnx from `siamese export`.", names=("--model", "-m"))
    index: str | None = setting(
        None,
        "FAISS index type: Flat, HNSW32, IVF1024,Flat, IVF1024,PQ16, SQ8…, auto, or ondisk (IVF "
        "built in parts, merged on disk, memory-mapped; or e.g. ondisk:IVF4096_HNSW32,SQ8) "
        "(default: Flat for a new gallery, else its current type).",
    )
    max_memory: str | None = setting(
        None, "Memory budget of --index auto, e.g. 8G (default: half the RAM)."
    )
    min_recall: float | None = setting(
        None, "Refuse an index whose recall@10 against exact search is lower.", min=0.0, max=1.0
    )
    target_recall: float | None = setting(
        None,
        "Tune --nprobe or --ef-search to the cheapest value whose recall@10 against exact search "
        "reaches this, on queries near gallery items (default 0.95).",
        min=0.0,
        max=1.0,
    )
    nprobe: int | None = setting(
        None, "IVF lists searched per query (default: tuned to --target-recall).", min=1
    )
    ef_search: int | None = setting(
        None, "HNSW search breadth (default: tuned to --target-recall).", min=1
    )
    commit_every: int | None = setting(
        None,
        "Images embedded between two commits (a killed run resumes from the last); default "
        "1000, with --engine ray 8 parts per actor.",
        min=1,
    )
    report_path: str | None = setting(
        None, "JSON list of refused files (default: GALLERY/rejected.json).", names=("--report",)
    )
    device: Literal["auto", "cpu", "cuda", "tensorrt"] = setting("auto", "Execution provider.")
    batch_size: int = setting(32, "Images per inference call.", min=1)
    engine: Literal["local", "ray"] = setting(
        "local",
        # "\\[" keeps rich from reading [ray] as markup.
        'local: this process embeds. ray: a Ray Data actor pool (pip install -e ".\\[ray]").',
    )
    address: str | None = setting(
        None,
        "Ray cluster: auto (one started with `ray start`) or ray://host:port (default: start a "
        "local cluster sized to this machine).",
    )
    actors: int | None = setting(
        None,
        "Ray actors, each one onnxruntime session (default: one per whole CPU the pool may "
        "claim; fewer if asked for more than fit).",
        min=1,
    )
    cpus_per_actor: float | None = setting(
        None,
        "CPUs per actor = its onnxruntime and decode threads (default: the pool's CPUs shared "
        "evenly). The pool claims at most the cluster's CPUs minus 0.5.",
        min=0.01,
    )
    gpus_per_actor: float = setting(0.0, "GPUs per actor (0: the actors run on CPUs).", min=0.0)
    part_size: int = setting(512, "Images per Ray part (the unit committed and resumed).", min=1)

    def ray_options(self) -> dict[str, Any]:
        """The RayEmbedder's options."""
        names = (*RAY_ONLY, "part_size")
        return {name: getattr(self, name) for name in names}

    def ray_only_given(self) -> list[str]:
        """Ray options set although the engine is local, as field names."""
        if self.engine == "ray":
            return []
        return [n for n in RAY_ONLY if getattr(self, n) not in (None, 0.0)]
