"""Every figure of the documentation, rendered from a results file in benchmarks/results/.

A figure quoted in the docs or the README is never typed by hand: a page holds a marker,
``<!-- figure: NAME -->``, and this module renders the table (or plot) NAME from the JSON a
``siamese bench`` run wrote, followed by where it comes from (file, date, machine, settings).
The MkDocs hook ``docs/hooks/figures.py`` expands the markers at build time; the README keeps its
rendered copy between ``<!-- figure: NAME -->`` and ``<!-- /figure -->`` so that it reads well on
a code host, and ``python benchmarks/doc_figures.py --readme`` rewrites it (``--check`` fails
when it has drifted from the results, as tests/test_readme.py checks).

Figures measured with a former default (the conv recipe's 96 px input cap) carry a ``stale``
note that says so; a figure whose results file is missing cannot be rendered at all.

Adding a figure: write a function that returns Markdown from ``results(FILE)`` (``table`` and
``num`` help), and register it in ``FIGURES`` under the marker's NAME with its results files, or
with ``pattern="SUITE-*.json"`` to follow the suite's newest run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"

#: A docs marker (one line) or the start of a README block.
MARKER = re.compile(r"<!-- figure: ([a-z0-9-]+) -->")
#: A README block: the marker, the rendered figure, the end marker.
BLOCK = re.compile(r"<!-- figure: ([a-z0-9-]+) -->\n.*?<!-- /figure -->", re.DOTALL)

STALE_96PX = (
    "measured with the conv recipe's former 96 px input cap (the default is now 64 px); "
    "kept for its ratios, re-run the suite for today's absolute figures"
)


@cache
def load(name: str) -> dict[str, Any]:
    """A results file's JSON (cached: a docs build renders many figures from few files)."""

    path = RESULTS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file missing; the figure cannot be rendered")
    return json.loads(path.read_text())


def results(name: str) -> dict[str, Any]:
    """The suite's own ``results`` block of a results file."""

    return load(name)["results"]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""

    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def num(value: Any, digits: int = 3) -> str:
    """A figure with a fixed number of decimals; a dash where the run has none."""

    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def provenance(name: str) -> str:
    """Where a figure comes from: the file, when, on what, with which settings."""

    data = load(name)
    machine = data.get("machine", {})
    hardware = ", ".join(
        part
        for part in (
            machine.get("cpu"),
            f"{machine['cores']} cores" if machine.get("cores") else None,
            f"{machine['memory_gib']} GiB" if machine.get("memory_gib") else None,
            machine.get("gpu") or "no GPU",
        )
        if part
    )
    settings = data.get("settings") or {}
    given = (settings.get("options") or {}).items()
    options = " ".join(f"-O {key}={value}" for key, value in given)
    command = f"siamese bench {data.get('suite', '?')}"
    if settings.get("quick"):
        command += " --quick"
    started = str(data.get("started", "date not recorded")).replace("T", " ")[:16]
    run = f"`{command} {options}`".replace(" `", "`") if data.get("suite") else "a one-off probe"
    hardware = hardware or "machine not recorded"
    return f"`benchmarks/results/{name}`: {run}, {started} UTC, {hardware}"


@dataclass(frozen=True)
class Figure:
    """One figure: its results files, how to render it, and a stale note where one applies.

    ``files`` names fixed results files; a figure that follows a suite's newest run names a
    ``pattern`` instead (``install_profiles-*.json``), resolved when the docs are built.
    """

    files: tuple[str, ...]
    render: Callable[..., str]
    stale: str = ""
    pattern: str = ""

    def sources(self) -> tuple[str, ...]:
        """The results files this figure is rendered from."""

        return (*self.files, latest(self.pattern)) if self.pattern else self.files


def latest(pattern: str) -> str:
    """The newest results file matching ``pattern`` (names end in their UTC start time)."""

    found = sorted(RESULTS.glob(pattern), key=lambda path: path.name[-21:])
    if not found:
        raise FileNotFoundError(
            f"{RESULTS / pattern}: no results file yet; run the suite, the figure needs one"
        )
    return found[-1].name


def render(name: str, *, assets: str = "figures/", admonitions: bool = True) -> str:
    """The figure NAME in Markdown, its sources listed under it."""

    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; known: {', '.join(sorted(FIGURES))}")
    figure = FIGURES[name]
    body = figure.render(assets) if _takes_assets(figure) else figure.render()
    sources = "; ".join(provenance(file) for file in figure.sources())
    text = f"{body}\n\n*Source: {sources}.*"
    if figure.stale:
        note = f"Stale: {figure.stale}."
        text += f'\n\n!!! warning "Stale figure"\n    {note}' if admonitions else f"\n\n*{note}*"
    return text


def _takes_assets(figure: Figure) -> bool:
    return figure.render.__code__.co_argcount == 1


def expand(markdown: str, *, assets: str = "figures/") -> str:
    """Replace every one-line ``<!-- figure: NAME -->`` marker of a docs page."""

    return MARKER.sub(lambda match: render(match.group(1), assets=assets), markdown)


def sync_readme(text: str) -> str:
    """The README with every figure block re-rendered from its results file."""

    def block(match: re.Match[str]) -> str:
        rendered = render(match.group(1), admonitions=False)
        return f"<!-- figure: {match.group(1)} -->\n{rendered}\n<!-- /figure -->"

    return BLOCK.sub(block, text)


def assets_used() -> dict[str, Path]:
    """Pictures the figures show: site path under ``figures/`` → results file."""

    return {name: RESULTS / name for name in PICTURES}


# ---------------------------------------------------------------- demo


def demo() -> str:
    """The end of ``siamese demo``'s output, as the command prints it (its newest recorded run)."""
    from siamese.demos.summary import demo_summary

    run = results(latest("demo-*.json"))
    where = {"out_dir": "/tmp/…", "matches_png": "/tmp/…/matches.png"}
    return "```text\n" + demo_summary({**run, **where}) + "\n```"


# ---------------------------------------------------------------- accuracy


METHOD_LABELS = {
    "raw": "raw pixels",
    "pca": "PCA of raw pixels",
    "seed": "seed recipe (classic network, contrastive pairs)",
    "pretrained": "pretrained EfficientNet-Lite0, not fine-tuned",
    "conv-grey": "conv recipe in grey",
    "conv-colour": "conv recipe in colour",
    "triplet-softmax": "`triplet-softmax` (Hoffer and Ailon's loss)",
    "default": "**default**",
}

ACCURACY_COLUMNS: dict[str, Callable[[dict[str, Any]], str]] = {
    "recall@1": lambda row: num(row.get("recall_at_1")),
    "recall@5": lambda row: num(row.get("recall_at_5")),
    "mAP@R": lambda row: num(row.get("map_at_r")),
    "ROC-AUC": lambda row: num(row.get("roc_auc")),
    "EER": lambda row: num(row.get("eer")),
    "recall@1 over enrolments": lambda row: _mean_std(row.get("enrolments")),
    "5-way": lambda row: _one_shot(row, "5-way"),
    "5-way within script": lambda row: _one_shot(row, "5-way within script"),
    "20-way": lambda row: _one_shot(row, "20-way"),
    "20-way within script": lambda row: _one_shot(row, "20-way within script"),
    "input": lambda row: row.get("input", "–"),
    "epochs (kept)": lambda row: (
        f"{row['epochs_run']} ({row.get('kept_epoch', '–')})" if "epochs_run" in row else "–"
    ),
    "training s": lambda row: num(row.get("train_seconds"), 0),
}


def _mean_std(enrolments: dict[str, Any] | None) -> str:
    if not enrolments:
        return "–"
    return f"{enrolments['recall_at_1_mean']:.3f} ± {enrolments['recall_at_1_std']:.3f}"


def _one_shot(row: dict[str, Any], protocol: str) -> str:
    trial = row.get("one_shot", {}).get(protocol)
    return num(trial["accuracy"]) if trial else "–"


def accuracy_table(
    file: str, datasets: Sequence[str], methods: Sequence[str], columns: Sequence[str]
) -> str:
    """One row per dataset and method of an accuracy run, in the order given."""

    runs = results(file)["results"]
    several = len(datasets) > 1  # one dataset: its name is in the text, not in every row
    rows = []
    for dataset in datasets:
        for method in methods:
            row = runs.get(dataset, {}).get(method)
            if row is not None:
                label = METHOD_LABELS.get(method, f"`{method}`")
                cells = [label, *(ACCURACY_COLUMNS[c](row) for c in columns)]
                rows.append([dataset, *cells] if several else cells)
    return table(["dataset", "method", *columns] if several else ["method", *columns], rows)


GROCERY = "accuracy-20261207T180747Z.json"
PRETRAINED = "accuracy-20261207T182925Z.json"
GLYPHS = "accuracy-20261202T001731Z.json"
SYNTHETIC_ATT = "accuracy-20261202T045957Z.json"
FASHION = "accuracy-20261202T022851Z.json"
FASHION_SEEDS = "accuracy-20261202T041007Z.json"
ATT_FOLDS = ("att-faces-fold-1", "att-faces-fold-2", "att-faces-fold-3", "att-faces")


def grocery() -> str:
    return accuracy_table(
        GROCERY,
        ["grocery"],
        ["raw", "pca", "conv-grey", "conv-colour", "pretrained", "default"],
        ["recall@1", "recall@1 over enrolments", "5-way", "20-way", "input", "training s"],
    )


def glyphs() -> str:
    columns = ["recall@1", "5-way", "5-way within script", "20-way", "20-way within script"]
    return accuracy_table(
        GLYPHS, ["glyphs"], ["raw", "pca", "seed", "triplet-softmax"], [*columns, "epochs (kept)"]
    )


def synthetic_att() -> str:
    return accuracy_table(
        SYNTHETIC_ATT,
        ["synthetic", *ATT_FOLDS],
        ["raw", "pca", "triplet-softmax", "default"],
        ["recall@1", "mAP@R", "recall@1 over enrolments", "5-way", "20-way", "input"],
    )


def fashion() -> str:
    return accuracy_table(
        FASHION,
        ["fashion-unseen", "fashion-unseen-first", "fashion-closed"],
        ["raw", "pca", "default"],
        ["recall@1", "recall@5", "mAP@R", "ROC-AUC", "EER", "input"],
    )


def fashion_enrolment() -> str:
    """recall@1 / mAP@R with 1, 5 and 20 images enrolled per class, default against PCA."""

    runs = results(FASHION)["results"]
    rows = []
    for dataset in ("fashion-unseen", "fashion-unseen-first"):
        for enrolled in ("1", "5", "20"):
            cells = []
            for method in ("default", "pca"):
                draw = runs[dataset][method]["enrolment_sweep"][enrolled]
                cells.append(f"{draw['recall_at_1_mean']:.3f} / {draw['map_at_r_mean']:.3f}")
            rows.append([dataset, enrolled, *cells])
    headers = ["dataset", "enrolled per class", "default", "PCA"]
    return table(headers, rows) + "\n\nEach cell: recall@1 / mAP@R, mean of five random draws."


def fashion_seeds() -> str:
    """The default on classes 0–3 for training seeds 0 (FASHION) and 1, 2 (FASHION_SEEDS)."""

    first = results(FASHION)["results"]["fashion-unseen-first"]["default"]
    seeds = results(FASHION_SEEDS)["results"]["fashion-unseen-first"]["default"]["training_seeds"]
    rows = [["0", num(first["recall_at_1"]), num(first["map_at_r"]), _sweep1(first)]]
    for index, seed in enumerate(seeds["seeds"]):
        rows.append(
            [
                str(seed),
                num(seeds["recall_at_1"]["per_seed"][index]),
                num(seeds["map_at_r"]["per_seed"][index]),
                num(seeds["enrolled_1_recall_at_1"]["per_seed"][index]),
            ]
        )
    headers = ["training seed", "recall@1", "mAP@R", "recall@1, 1 enrolled per class (5 draws)"]
    return table(headers, rows)


def _sweep1(row: dict[str, Any]) -> str:
    return num(row["enrolment_sweep"]["1"]["recall_at_1_mean"])


def pretrained_vs_default() -> str:
    """ImageNet features without fine-tuning beside the default each dataset gets."""

    pretrained = results(PRETRAINED)["results"]
    default_of = {
        "grocery": results(GROCERY)["results"],
        "synthetic": results(SYNTHETIC_ATT)["results"],
        **{fold: results(SYNTHETIC_ATT)["results"] for fold in ATT_FOLDS},
        **{d: results(FASHION)["results"] for d in ("fashion-unseen", "fashion-unseen-first")},
        "fashion-closed": results(FASHION)["results"],
    }
    rows = []
    for dataset in ("grocery", "glyphs", "synthetic", *ATT_FOLDS, "fashion-unseen"):
        rows.append(_pretrained_row(dataset, pretrained, default_of.get(dataset)))
    for dataset in ("fashion-unseen-first", "fashion-closed"):
        rows.append(_pretrained_row(dataset, pretrained, default_of.get(dataset)))
    headers = ["dataset", "pretrained, not fine-tuned", "default (recipe chosen from the data)"]
    note = "\n\nEach cell: recall@1 / mAP@R. Glyphs' default has no results file here."
    return table(headers, rows) + note


def _pretrained_row(
    dataset: str, pretrained: dict[str, Any], runs: dict[str, Any] | None
) -> list[str]:
    def cell(row: dict[str, Any] | None) -> str:
        return f"{num(row['recall_at_1'])} / {num(row['map_at_r'])}" if row else "–"

    source = (runs or {}).get(dataset, {}).get("default")
    base = pretrained.get(dataset, {}).get("pretrained")
    if base is None and dataset == "grocery":
        base = results(GROCERY)["results"]["grocery"]["pretrained"]
    return [dataset, cell(base), cell(source)]


# ---------------------------------------------------------------- speed


PHOTO_TOWER = "photo_tower-20261207T214232Z.json"


def photo_tower() -> str:
    run = results(PHOTO_TOWER)
    speed = run["images_per_s"]
    head = table(
        ["images/s", "decode + resize", "inference", "end to end"],
        [
            [
                f"EfficientNet-Lite0 fp32, {run['input']}, batch {run['batch_size']}",
                num(speed["decode_preprocess"], 0),
                num(speed["inference_fp32"], 0),
                num(speed["end_to_end_fp32"], 0),
            ],
            [
                "the same, int8 as exported",
                num(speed["decode_preprocess"], 0),
                num(speed["inference_export"], 0),
                num(speed["end_to_end_int8"], 0),
            ],
        ],
    )
    labels = {
        "export": "what `export --precision int8` writes (every int8-capable operator)",
        "convs": "convolutions only, all but the first",
        "pointwise": "1×1 convolutions only",
    }
    rows = [
        [
            label,
            f"{v['mean_cosine']:.3f} / {v['min_cosine']:.3f}",
            f"{v['top1_fp32']:.3f} → {v['top1_variant']:.3f}",
            "passed" if v["passed"] else "refused",
            f"{v['inference_speedup']:.2f}×",
        ]
        for key, label in labels.items()
        if (v := run["int8"].get(key))
    ]
    int8 = table(
        ["int8 variant", "mean / min cosine to fp32", "leave-one-out top-1", "gate", "vs fp32"],
        rows,
    )
    fraction = run["end_to_end_fraction_of_serial_limit"]
    summary = (
        f"End to end reaches {fraction:.2f} of 1 / (1/decode + 1/inference), what the two "
        f"stages allow when they share the cores; {run['photos']['images']} photos."
    )
    return f"{head}\n\n{summary}\n\n{int8}"


def speed_targets() -> str:
    targets = results("speed-20261124T214925Z.json")["targets"]
    rows = [
        [name.replace("_", " "), item["definition"], num(item["value"], 2), item["threshold"]]
        for name, item in targets.items()
    ]
    return table(["target", "definition", "value", "threshold"], rows)


def training_time() -> str:
    run = results("training_time-20261201T222006Z.json")
    labels = {"64px": "default now (64 px cap)", "default": "former default (96 px cap)"}
    rows = []
    for key, label in labels.items():
        r = run["runs"][key]
        rows.append(
            [
                label,
                num(r["wall_seconds"], 1),
                f"{num(r['user_seconds'], 0)} / {num(r['system_seconds'], 1)}",
                num(r["peak_rss_mib"], 0),
                num(r["train_images_per_second"], 1),
                f"{r['gflops_per_image']['forward']:.3f} + {r['gflops_per_image']['backward']:.3f}",
                num(r["best_val_map_at_r"]),
            ]
        )
    headers = [
        "`siamese train`",
        "wall s",
        "user / system CPU s",
        "peak RSS MiB",
        "training images/s",
        "GFLOP per image (fwd + bwd)",
        "validation mAP@R",
    ]
    return f"{table(headers, rows)}\n\nData: {run['data']}, {run['epochs']} epochs."


def service() -> str:
    run = results("service-20261124T220156Z.json")
    rows = []
    for name, scenario in run["scenarios"].items():
        for mode, figures in scenario["modes"].items():
            rows.append(
                [
                    f"{name}: {scenario['about']}",
                    mode.replace("_", " "),
                    num(figures["requests_per_s"], 0),
                    "{p50_ms:.0f} / {p95_ms:.0f} / {p99_ms:.0f}".format(**figures),
                    f"{figures['errors']} / {figures['wrong_answers']}",
                    num(figures["mean_batch"], 1),
                ]
            )
    headers = [
        "scenario",
        "mode",
        "requests/s",
        "p50 / p95 / p99 ms",
        "errors / wrong answers",
        "mean batch",
    ]
    settings = run["settings"]
    return (
        table(headers, rows)
        + f"\n\n{settings['clients']} concurrent clients × {settings['per_client']} queries, "
        f"{settings['rounds']} alternating rounds, `--max-batch {settings['max_batch']}`."
    )


def ray_embedding() -> str:
    run = results("ray_embedding-20261201T210818Z.json")
    ray = run["ray_local_cluster"]
    rows = [
        ["single process", num(run["single_process"]["images_per_s"], 1), "–"],
        [
            "Ray local cluster ({actors} actor × {cpus_per_actor} CPUs)".format(**ray["settings"]),
            num(ray["images_per_s"], 1),
            f"{ray['startup_s']['cluster_connect']:.1f} s to start the cluster",
        ],
    ]
    setup = run["setup"]
    return (
        table(["engine", "images/s (median of rounds)", "start-up"], rows)
        + f"\n\n{run['images']} JPEGs of {setup['width']}×{setup['height']}, tower input "
        f"{setup['size']} px; Ray / single process = "
        f"{run['throughput_ratio_ray_over_single']:.2f}× (target {run['target_ratio']}×); "
        f"largest difference between their embeddings {run['embeddings_max_abs_difference']}."
    )


def distributed() -> str:
    rows = []
    for file in ("distributed-20261201T183647Z.json", "distributed-20261201T183819Z.json"):
        run = results(file)
        one, two = run["one_process_two_threads"], run["two_processes_one_thread"]
        rows.append(
            [
                file.split("-")[1].removesuffix(".json"),
                num(one["images_per_second"], 0),
                num(two["images_per_second"], 0),
                f"{run['throughput_ratio_2x1_over_1x2']:.2f}×",
                f"{one['final_val_map_at_r']:.3f} / {two['final_val_map_at_r']:.3f}",
            ]
        )
    setup = results("distributed-20261201T183647Z.json")["setup"]
    headers = [
        "run",
        "1 process × 2 threads, images/s",
        "2 processes × 1 thread, images/s",
        "ratio",
        "final validation mAP@R (1 / 2 processes)",
    ]
    return (
        table(headers, rows)
        + f"\n\nSame data and global batch ({setup['p']} identities × {setup['k']} images, "
        f"{setup['size']} px), {setup['epochs']} epochs × {setup['steps_per_epoch']} steps."
    )


def pair() -> str:
    files = ("pair-20261201T203658Z.json", "pair-20261201T204152Z.json")
    runs = [results(file) for file in files]
    rows = []
    for task, methods in (
        ("sketch → photo", ("pair", "shared", "pca", "raw_pixels", "chance")),
        ("text → photo", ("pair", "chance")),
    ):
        key = "sketch_to_photo" if task.startswith("sketch") else "text_to_photo"
        for method in methods:
            cells = [
                " / ".join(num(run[key][method][metric]) for run in runs)
                for metric in ("recall_at_1", "recall_at_5", "map_at_r")
            ]
            rows.append([task, method.replace("_", " "), *cells])
    text = [run["text_query_end_to_end"] for run in runs]
    settings = runs[0]["settings"]
    return (
        table(["task", "method", "recall@1", "recall@5", "mAP@R"], rows)
        + "\n\nEach cell: seed 0 / seed 1, on "
        f"{settings['unseen']} unseen identities ({settings['identities']} trained, "
        f"{settings['epochs']} epochs). A text query end to end (tokenise, embed, search a "
        f"{settings['gallery_size']:,}-item Flat gallery): p50 "
        + " / ".join(f"{t['p50_ms']:.1f}" for t in text)
        + " ms."
    )


def install_profiles() -> str:
    """Each install profile's time and size in a fresh venv (the suite's newest run)."""

    run = results(latest("install_profiles-*.json"))
    rows = [
        [
            f"`{record['command']}`",
            num(record["install_s"], 0),
            record.get("du_sh") or f"{record['size_gib']:.2f} GiB",
            record["distributions"],
            "yes" if record["torch_importable"] else "no",
            ", ".join(record["onnxruntime_builds"]) or "none",
        ]
        for record in run["profiles"]
    ]
    headers = ["profile", "install s", "size", "distributions", "PyTorch", "onnxruntime"]
    return table(headers, rows)


# ---------------------------------------------------------------- galleries


GALLERY_FILES = ("gallery-20261124T112558Z.json", "gallery-20261124T114324Z.json")


def gallery_index_types() -> str:
    rows = []
    for file in GALLERY_FILES:
        for r in results(file)["rows"]:
            params = ", ".join(f"{k}={v}" for k, v in r["search_params"].items()) or "–"
            rows.append(
                [
                    f"{r['size']:,}",
                    r["index_type"],
                    num(r["build_seconds"], 1),
                    num(r["index_mb"], 1),
                    num(r["recall_at1"]),
                    num(r["recall_at10"]),
                    num(r["qps_batched"], 0),
                    num(r["qps_single"], 0),
                    f"{r['overhead_batched']:+.1%}",
                    params,
                ]
            )
    headers = [
        "vectors",
        "index",
        "build s",
        "index MB",
        "recall@1",
        "recall@10",
        "QPS batched",
        "QPS single",
        "overhead vs FAISS",
        "search parameter",
    ]
    dim = results(GALLERY_FILES[0])["dim"]
    return table(headers, rows) + f"\n\nGenerated {dim}-d vectors, clustered like identities."


SCALE = "gallery_scale-20261202T012347Z.json"
PICTURES = ("gallery_scale-20261202T012347Z.png",)


def gallery_scale() -> str:
    rows = []
    for r in results(SCALE)["rows"]:
        opened = r["opened_fresh_process"]
        rows.append(
            [
                f"{r['size']:,}",
                r["index_type"].removeprefix("ondisk:"),
                r["parts"],
                num(r["build_seconds"], 1),
                num(r["build_peak_rss_mib"], 0),
                num(r["disk"]["lists_mib"], 1),
                num(r["disk"]["items_db_mib"], 0),
                r["search_params"].get("nprobe", "–"),
                f"{r['recall_at1']:.3f} / {r['recall_at10']:.3f}",
                f"{r['single']['p50_ms']:.1f} / {r['single']['p95_ms']:.1f}",
                f"{opened['open_seconds']:.2f} s, {opened['open_rss_mib']:.0f} MiB",
                num(opened["row_check_seconds"], 1),
            ]
        )
    headers = [
        "vectors",
        "index",
        "parts",
        "build s",
        "build peak RSS MiB",
        "lists MiB",
        "items DB MiB",
        "tuned nprobe",
        "recall@1 / @10",
        "single query p50 / p95 ms",
        "open (fresh process)",
        "first open after a change: row recount s",
    ]
    return table(headers, rows) + "\n\n" + str(results(SCALE)["generator"]) + "."


def gallery_scale_sweep() -> str:
    largest = results(SCALE)["rows"][-1]
    rows = [
        [
            step["nprobe"],
            num(step["recall_at10"]),
            f"{step['p50_ms']:.1f} / {step['p95_ms']:.1f}",
            f"{step['one_thread']['p50_ms']:.1f} / {step['one_thread']['p95_ms']:.1f}",
        ]
        for step in largest["nprobe_sweep"]
    ]
    headers = ["nprobe", "recall@10", "p50 / p95 ms, as `query` runs it", "p50 / p95 ms, 1 thread"]
    return f"At {largest['size']:,} vectors:\n\n" + table(headers, rows)


def gallery_scale_plot(assets: str) -> str:
    return f"![Each cost of an on-disk gallery against its size, log-log]({assets}{PICTURES[0]})"


def ondisk_updates() -> str:
    run = results("ondisk_updates-20261201T203505Z.json")
    labels = {
        "merged": "merged lists",
        "with_added_part": f"plus an added part ({run['share']:.0%} of the gallery)",
        "with_added_part_and_removed_ids": f"plus {run['share']:.0%} of the ids removed",
        "merged_again": "merged again",
    }
    rows = [
        [label, f"{run['single_query_ms'][key]:.2f}", f"{run['relative_to_merged'][key]:.2f}×"]
        for key, label in labels.items()
    ]
    return table(["gallery state", "single query ms", "vs merged"], rows) + (
        f"\n\n{run['size']:,} vectors, `nprobe` {run['nprobe']}, one thread."
    )


# ---------------------------------------------------------------- gallery audit

AUDIT = "gallery_audit-20261207T220003Z.json"
AUDIT_KINDS = {
    "exact_duplicate": "exact duplicates",
    "near_duplicate": "near-duplicates",
    "mislabel": "mislabels",
    "overlap": "overlaps",
    "loose": "loose identities",
}


def _audit_model(name: str) -> str:
    if name == "features":
        return "ImageNet EfficientNet-Lite0 features"
    return f"trained tower (`{Path(name).parent.name}`)"


def _precision_recall(score: dict[str, Any]) -> str:
    return f"{num(score['precision'], 2)} / {num(score['recall'], 2)}"


def gallery_audit() -> str:
    """Precision / recall of each finding kind on the planted galleries."""

    rows = [
        [
            row["dataset"],
            _audit_model(row["model"]),
            num(row["items"]),
            *(_precision_recall(row["scores"][kind]) for kind in AUDIT_KINDS),
        ]
        for row in results(AUDIT)["datasets"]
    ]
    headers = ["dataset", "embeddings", "items", *(f"{v} P / R" for v in AUDIT_KINDS.values())]
    suggested = [
        num(row["scores"]["mislabel"]["suggested_identity_right"], 2)
        for row in results(AUDIT)["datasets"]
    ]
    return table(headers, rows) + (
        "\n\nP: precision (planted defects among the findings), R: recall (planted defects "
        "found). Mislabels found whose suggested identity is the right one: "
        f"{', '.join(suggested)} (by row)."
    )


def gallery_audit_timing() -> str:
    """Seconds per audit at each size and index type, split into its stages."""

    rows = [
        [
            num(row["size"]),
            f"`{row['index_type']}`"
            + (f" (nprobe {row['search_params']['nprobe']})" if row["search_params"] else ""),
            num(row["audit_seconds"]["read"], 1),
            num(row["audit_seconds"]["search"], 1),
            num(row["audit_seconds"]["analyse"], 1),
            num(row["audit_seconds"]["total"], 1),
        ]
        for row in results(AUDIT)["timing"]
    ]
    dim = results(AUDIT)["timing"][0]["dim"] if results(AUDIT)["timing"] else "?"
    return table(["items", "index", "read s", "k-NN search s", "analysis s", "total s"], rows) + (
        f"\n\nClustered unit vectors of dimension {dim} (clusters of 10 items), k = 10."
    )


FIGURES: dict[str, Figure] = {
    "demo": Figure((), demo, pattern="demo-*.json"),
    "grocery": Figure((GROCERY,), grocery),
    "pretrained-vs-default": Figure(
        (PRETRAINED, GROCERY, SYNTHETIC_ATT, FASHION), pretrained_vs_default
    ),
    "glyphs": Figure((GLYPHS,), glyphs),
    "synthetic-att": Figure((SYNTHETIC_ATT,), synthetic_att),
    "fashion": Figure((FASHION,), fashion),
    "fashion-enrolment": Figure((FASHION,), fashion_enrolment),
    "fashion-seeds": Figure((FASHION, FASHION_SEEDS), fashion_seeds),
    "training-time": Figure(("training_time-20261201T222006Z.json",), training_time),
    "photo-tower": Figure((PHOTO_TOWER,), photo_tower),
    "speed-targets": Figure(("speed-20261124T214925Z.json",), speed_targets, STALE_96PX),
    "service": Figure(
        ("service-20261124T220156Z.json",),
        service,
        "the default scenario's tower is the conv recipe at its former 96 px input cap",
    ),
    "ray-embedding": Figure(("ray_embedding-20261201T210818Z.json",), ray_embedding, STALE_96PX),
    "distributed": Figure(
        ("distributed-20261201T183647Z.json", "distributed-20261201T183819Z.json"), distributed
    ),
    "pair": Figure(("pair-20261201T203658Z.json", "pair-20261201T204152Z.json"), pair),
    "install-profiles": Figure((), install_profiles, pattern="install_profiles-*.json"),
    "gallery-index-types": Figure(GALLERY_FILES, gallery_index_types),
    "gallery-scale": Figure((SCALE,), gallery_scale),
    "gallery-scale-sweep": Figure((SCALE,), gallery_scale_sweep),
    "gallery-scale-plot": Figure((SCALE,), gallery_scale_plot),
    "ondisk-updates": Figure(("ondisk_updates-20261201T203505Z.json",), ondisk_updates),
    "gallery-audit": Figure((AUDIT,), gallery_audit),
    "gallery-audit-timing": Figure((AUDIT,), gallery_audit_timing),
}


def main(argv: Sequence[str] | None = None) -> int:
    """``--readme`` rewrites README's figures, ``--check`` fails if they drifted, ``--list``."""

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's figures")
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md has drifted")
    parser.add_argument("--list", action="store_true", help="each figure and its results files")
    args = parser.parse_args(argv)
    if args.list:
        for name, figure in FIGURES.items():
            files = figure.files + ((figure.pattern,) if figure.pattern else ())
            print(f"{name}: {', '.join(files)}{' (stale)' if figure.stale else ''}")
    current = README.read_text()
    synced = sync_readme(current)
    if args.readme and synced != current:
        README.write_text(synced)
    if args.check and synced != current:
        print("README.md's figures differ from benchmarks/results; run --readme", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
