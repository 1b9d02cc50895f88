"""``synthrank report RUN_DIR``: a Markdown table, PNG plots and a manifest tying every number
to the data, config and code version that produced it. Reads only the run folder."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from synthrank import __version__
from synthrank.data.beir import atomic_write
from synthrank.experiments.provenance import code_version

BASE = "base"


@dataclass
class RunRecords:
    evals: list[dict] = field(default_factory=list)     # stage record + result
    stages: list[dict] = field(default_factory=list)    # every stage.json
    loss_curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _loss_curve(train_dir: Path) -> list[tuple[int, float]]:
    """Training-loss points from the trainer state with the most steps (final or a checkpoint)."""
    best: list[tuple[int, float]] = []
    for state_file in train_dir.rglob("trainer_state.json"):
        state = _read_json(state_file) or {}
        points = [(h["step"], h["loss"]) for h in state.get("log_history", []) if "loss" in h and "step" in h]
        if len(points) > len(best):
            best = points
    return best


def collect(run_dir: str | Path) -> RunRecords:
    """Every stage record, in pipeline order and, within a kind, in the config's order."""
    run_dir = Path(run_dir)
    records = RunRecords()
    pipeline_order = {"generate": 0, "mine": 1, "train": 2, "eval": 3}
    config = _read_json(run_dir / "experiment.json") or {}
    declared = {kind: [entry.get("name") for entry in config.get(kind, [])] for kind in ("generate", "mine")}
    declared["train"] = [BASE] + [s.get("name") for s in config.get("settings", [])]
    declared["eval"] = declared["train"]

    def position(record_file: Path) -> tuple:
        kind, name = record_file.parent.parent.name, record_file.parent.name
        names = declared.get(kind, [])
        key = name.split("@", 1)[0] if kind == "eval" else name
        return (pipeline_order.get(kind, 9), names.index(key) if key in names else len(names), name)

    files = sorted(run_dir.glob("*/*/stage.json"), key=position)
    for record_file in files:
        record = _read_json(record_file)
        if record is None:
            continue
        records.stages.append(record)
        kind = record["stage"].split("/", 1)[0]
        if kind == "eval" and record.get("status") == "done":
            result = _read_json(record_file.parent / "result.json")
            if result:
                records.evals.append({**record, "result": result})
        if kind == "train":
            curve = _loss_curve(record_file.parent)
            if curve:
                records.loss_curves[record["stage"].split("/", 1)[1]] = curve
    return records


def _eval_label(record: dict) -> str:
    return f"{Path(record['spec']['dataset']).name}/{record['spec']['split']}"


def results_table(records: RunRecords, measures: tuple[str, ...] = ("nDCG@10", "RR@10")) -> str:
    """Settings x eval sets; the base model first, the best value of each column in bold."""
    models: list[str] = []
    sets: list[str] = []
    values: dict[tuple[str, str, str], float] = {}
    for record in records.evals:
        model, label = record["spec"]["model"], _eval_label(record)
        models += [model] if model not in models else []
        sets += [label] if label not in sets else []
        for measure in measures:
            if measure in record["result"]["metrics"]:
                values[model, label, measure] = record["result"]["metrics"][measure]
    first_seen = {m: i for i, m in enumerate(models)}
    models.sort(key=lambda m: (m != BASE, first_seen[m]))
    header = "| setting | " + " | ".join(f"{s} {m}" for s in sets for m in measures) + " |"
    rule = "|---|" + "---|" * (len(sets) * len(measures))
    lines = [header, rule]
    for model in models:
        cells = []
        for label in sets:
            for measure in measures:
                value = values.get((model, label, measure))
                column = [v for (mm, ll, me), v in values.items() if ll == label and me == measure]
                text = "—" if value is None else f"{value:.4f}"
                if value is not None and len(set(column)) > 1 and value == max(column):
                    text = f"**{text}**"
                cells.append(text)
        name = f"{model} (untrained)" if model == BASE else model
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_table(records: RunRecords) -> str:
    lines = ["| stage | status | wall time (s) |", "|---|---|---|"]
    total = 0.0
    for record in records.stages:
        status = record.get("status", "?")
        if status == "failed":
            status = f"failed: {record.get('error', '')}"
        total += record.get("seconds", 0) or 0
        lines.append(f"| {record['stage']} | {status} | {record.get('seconds', 0):.1f} |")
    lines.append(f"| total | | {total:.1f} ({total / 60:.0f} min) |")
    return "\n".join(lines)


def settings_table(records: RunRecords, config: dict) -> str:
    """What each trained model is: loss, temperature, group size, steps, first-step and mean loss."""
    descriptions = {s.get("name"): s.get("description", "") for s in config.get("settings", [])}
    lines = ["| setting | loss | τ | group | steps | first-step loss → mean loss | description |", "|---|---|---|---|---|---|---|"]
    for record in records.stages:
        kind, name = record["stage"].split("/", 1)
        if kind != "train":
            continue
        spec, details = record.get("spec", {}), record.get("details") or {}
        train = spec.get("train", {})
        first, last = details.get("first_loss"), details.get("train_loss")
        losses = f"{first:.4f} → {last:.4f}" if first is not None and last is not None else "—"
        lines.append(f"| {name} | {spec.get('loss', '?')} | {train.get('temperature', 1.0):g} | "
                     f"{spec.get('recipe', {}).get('group_size', '?')} | {details.get('global_step', '—')} | "
                     f"{losses} | {descriptions.get(name, '')} |")
    return "\n".join(lines)


def plot(records: RunRecords, folder: Path, measure: str = "nDCG@10") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    by_set: dict[str, list[tuple[str, float]]] = {}
    for record in records.evals:
        value = record["result"]["metrics"].get(measure)
        if value is not None:
            by_set.setdefault(_eval_label(record), []).append((record["spec"]["model"], value))
    for label, points in by_set.items():
        order = {name: i for i, (name, _) in enumerate(points)}  # records come in config order
        points.sort(key=lambda p: (p[0] != BASE, order[p[0]]))
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(points) + 1), 3.6))
        colors = ["#888888" if name == BASE else "#2b6cb0" for name, _ in points]
        bars = ax.bar([name for name, _ in points], [v for _, v in points], color=colors)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.set_ylabel(measure)
        ax.set_title(f"{measure} on {label}")
        ax.set_ylim(0, max(v for _, v in points) * 1.15)
        ax.tick_params(axis="x", rotation=20)
        fig.tight_layout()
        path = folder / f"{measure.replace('@', '_at_')}_{label.replace('/', '_')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if records.loss_curves:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for name, curve in records.loss_curves.items():
            ax.plot([s for s, _ in curve], [v for _, v in curve], label=name, marker="o", markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (own units per setting)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title("training loss")
        fig.tight_layout()
        path = folder / "training_loss.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def _sha256(path: Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None


def manifest(records: RunRecords, run_dir: Path) -> dict:
    """Each number with the stage that made it, that stage's fingerprint, inputs and data hashes."""
    numbers = []
    for record in records.evals:
        folder = Path(record["result"].get("dataset", ""))
        data_files = {}
        from synthrank.data.resolve import resolve_dataset

        try:
            resolved = resolve_dataset(record["spec"]["dataset"], download=False)
            data_files = {
                "qrels": _sha256(resolved / "qrels" / f"{record['spec']['split']}.tsv"),
                "corpus": _sha256(resolved / "corpus.jsonl"),
                "queries": _sha256(resolved / "queries.jsonl"),
            }
        except Exception:
            data_files = {"unresolved": str(folder)}
        numbers.append({"model": record["spec"]["model"], "eval_set": _eval_label(record),
                        "metrics": record["result"]["metrics"], "num_queries": record["result"]["num_queries"],
                        "stage_fingerprint": record["fingerprint"], "data_sha256": data_files,
                        "model_path": record["result"]["model"],
                        "code": record.get("code", "not recorded (stage finished before synthrank recorded it)")})
    stages = [{"stage": r["stage"], "status": r.get("status"), "seconds": r.get("seconds"),
               "fingerprint": r.get("fingerprint"), "spec": r.get("spec"), "details": r.get("details"),
               "error": r.get("error"), "code": r.get("code")} for r in records.stages]
    config_file = run_dir / "experiment.json"
    return {"run_dir": str(run_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "report_code": code_version(),
            "config": _read_json(config_file), "config_sha256": _sha256(config_file),
            "numbers": numbers, "stages": stages}


def write_report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write ``report.md``, ``plots/*.png`` and ``manifest.json`` into ``output`` (default RUN_DIR/report)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    out = Path(output) if output else run_dir / "report"
    records = collect(run_dir)
    if not records.stages:
        raise FileNotFoundError(f"{run_dir}: no stage records (stage.json) found; is this a run folder?")
    plots = plot(records, out / "plots")
    config = _read_json(run_dir / "experiment.json") or {}
    lines = [f"# Experiment report: {config.get('name', run_dir.name)}", ""]
    if config.get("description"):
        lines += [config["description"], ""]
    lines += ["## Results", "", results_table(records), ""]
    lines += [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    if any(r["stage"].startswith("train/") for r in records.stages):
        lines += ["## Settings", "", settings_table(records, config), ""]
    lines += ["## Stages", "", stage_table(records), ""]
    lines += ["Every number above is traced in `manifest.json` to its stage, inputs, data hashes and code version.", ""]
    with atomic_write(out / "report.md") as handle:
        handle.write("\n".join(lines))
    with atomic_write(out / "manifest.json") as handle:
        handle.write(json.dumps(manifest(records, run_dir), indent=2, default=str) + "\n")
    return out
