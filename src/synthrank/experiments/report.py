"""``synthrank report RUN_DIR``: a Markdown table, PNG plots and a manifest tying every number
to the data, config and code version that produced it. Reads only the run folder."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthrank.utils import atomic_write
from synthrank.evaluate.significance import compare, mean_over_seeds
from synthrank.experiments.config import Setting
from synthrank.experiments.provenance import code_version
from synthrank.experiments.runner import shown_status

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
    pipeline_order = {"holdout": 0, "generate": 1, "mine": 2, "train": 3, "eval": 4}
    config = _read_json(run_dir / "experiment.json") or {}
    declared = {kind: [entry.get("name") for entry in config.get(kind, [])] for kind in ("holdout", "generate", "mine")}
    declared["train"] = [BASE] + [model for s in config.get("settings", []) for model, _ in _models_of(s)]
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


def _models_of(setting: dict) -> list[tuple[str, int | None]]:
    """(model, seed) of each model a setting (as written in experiment.json) trains: the naming
    rule is :meth:`Setting.model_names`'s."""
    return Setting(**{"loss": "", "recipe": {}, **setting}).model_names()


def _eval_label(record: dict) -> str:
    dataset = record["spec"]["dataset"]
    name = Path(dataset).name.replace("{", "").replace("}", "").replace("holdout.", "")
    return f"{name}/{record['spec']['split']}"


def setting_of(records: RunRecords) -> dict[str, str]:
    """Model name -> the setting it belongs to (seeded models share their setting)."""
    mapping = {BASE: BASE}
    for record in records.stages:
        kind, name = record["stage"].split("/", 1)
        if kind == "train":
            mapping[name] = (record.get("spec") or {}).get("setting") or name
    return mapping


@dataclass
class SettingScores:
    """One setting on one eval set: the metric of each seed's model and per-query values."""

    metrics: dict[str, list[float]] = field(default_factory=dict)       # measure -> one value per model
    per_query: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # measure -> per model

    def mean(self, measure: str) -> float | None:
        values = self.metrics.get(measure)
        return float(np.mean(values)) if values else None

    def std(self, measure: str) -> float | None:
        values = self.metrics.get(measure)
        return float(np.std(values, ddof=1)) if values and len(values) > 1 else None

    def seeds(self, measure: str) -> int:
        return len(self.metrics.get(measure, []))

    def query_means(self, measure: str) -> dict[str, float] | None:
        runs = self.per_query.get(measure)
        if not runs or any(not run for run in runs):
            return None
        return mean_over_seeds(runs)


def scores_by_setting(records: RunRecords) -> tuple[list[str], list[str], dict[tuple[str, str], SettingScores]]:
    """(settings in order, eval sets in order, (setting, eval set) -> scores)."""
    owner = setting_of(records)
    settings: list[str] = []
    sets: list[str] = []
    table: dict[tuple[str, str], SettingScores] = {}
    for record in records.evals:
        setting = owner.get(record["spec"]["model"], record["spec"]["model"])
        label = _eval_label(record)
        settings += [setting] if setting not in settings else []
        sets += [label] if label not in sets else []
        scores = table.setdefault((setting, label), SettingScores())
        result = record["result"]
        for measure, value in result["metrics"].items():
            scores.metrics.setdefault(measure, []).append(value)
            per_query = result.get("per_query") or {}
            scores.per_query.setdefault(measure, []).append({q: v[measure] for q, v in per_query.items() if measure in v})
    settings.sort(key=lambda name: name != BASE)
    return settings, sets, table


def _cell(scores: SettingScores | None, measure: str) -> tuple[float | None, str]:
    mean = scores.mean(measure) if scores else None
    if mean is None:
        return None, "—"
    std = scores.std(measure)
    return mean, f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def results_table(records: RunRecords, measures: tuple[str, ...] = ("nDCG@10", "RR@10")) -> str:
    """Settings x eval sets (mean ± std over seeds); the base model first, each column's best in bold."""
    settings, sets, table = scores_by_setting(records)
    header = "| setting | seeds | " + " | ".join(f"{s} {m}" for s in sets for m in measures) + " |"
    rule = "|---|---|" + "---|" * (len(sets) * len(measures))
    lines = [header, rule]
    for setting in settings:
        cells = []
        seeds = max((table[setting, label].seeds(m) for label in sets for m in measures if (setting, label) in table),
                    default=0)
        for label in sets:
            for measure in measures:
                value, text = _cell(table.get((setting, label)), measure)
                column = [table[s, label].mean(measure) for s in settings if (s, label) in table]
                column = [v for v in column if v is not None]
                if value is not None and len(set(column)) > 1 and value == max(column):
                    text = f"**{text}**"
                cells.append(text)
        name = f"{setting} (untrained)" if setting == BASE else setting
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def significance_table(records: RunRecords, config: dict, measure: str = "nDCG@10") -> str:
    """Each setting against the base model and against its ``compare_to`` setting: the difference
    of the means and the p-value of a paired randomization test over queries (per-query scores
    averaged over seeds)."""
    settings, sets, table = scores_by_setting(records)
    compare_to = {s.get("name"): s.get("compare_to") for s in config.get("settings", [])}
    lines = [f"| setting | eval set | Δ {measure} vs base (p) | vs | Δ (p) | wins / losses vs base |",
             "|---|---|---|---|---|---|"]
    for setting in settings:
        if setting == BASE:
            continue
        for label in sets:
            mine = table.get((setting, label))
            queries = mine.query_means(measure) if mine else None
            if queries is None:
                continue
            cells = []
            wins = "—"
            for other in (BASE, compare_to.get(setting)):
                theirs = table.get((other, label)) if other else None
                baseline = theirs.query_means(measure) if theirs else None
                if baseline is None:
                    cells.append("—")
                    continue
                result = compare(queries, baseline)
                cells.append(f"{result['delta']:+.4f} ({_p(result['p_value'])})")
                if other == BASE:
                    wins = f"{result['wins']} / {result['losses']}"
            lines.append(f"| {setting} | {label} | {cells[0]} | {compare_to.get(setting) or '—'} | {cells[1]} | {wins} |")
    return "\n".join(lines)


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def fidelity_table(records: RunRecords) -> str:
    """Level fidelity of each generation job (from its manifest): pairwise ordering accuracy."""
    lines = []
    for record in records.stages:
        kind, name = record["stage"].split("/", 1)
        fidelity = (record.get("details") or {}).get("fidelity") if kind == "generate" else None
        if not fidelity:
            continue
        for scorer, result in fidelity.items():
            pairs = result.get("pairs", {})
            if not lines:
                lines = ["| generation | scorer | " + " | ".join(pairs) + " | mean | mean score per level |",
                         "|---|---|" + "---|" * (len(pairs) + 2)]
            means = ", ".join(f"L{g} {v:.3f}" for g, v in result.get("mean_score", {}).items() if v is not None)
            cells = " | ".join("—" if v is None else f"{v:.3f}" for v in pairs.values())
            lines.append(f"| {name} | {scorer} | {cells} | {result.get('mean_accuracy')} | {means} |")
    return "\n".join(lines)


def stage_table(records: RunRecords) -> str:
    lines = ["| stage | status | wall time (s) |", "|---|---|---|"]
    total = 0.0
    for record in records.stages:
        status = shown_status(record)
        total += record.get("seconds", 0) or 0
        lines.append(f"| {record['stage']} | {status} | {record.get('seconds', 0):.1f} |")
    lines.append(f"| total | | {total:.1f} ({total / 60:.0f} min) |")
    return "\n".join(lines)


def settings_table(records: RunRecords, config: dict) -> str:
    """What each trained model is: loss, temperature, group size, steps, first-step and mean loss."""
    descriptions = {s.get("name"): s.get("description", "") for s in config.get("settings", [])}
    lines = ["| model | loss | τ | label τ | group | steps | first-step loss → mean loss | description |",
             "|---|---|---|---|---|---|---|---|"]
    for record in records.stages:
        kind, name = record["stage"].split("/", 1)
        if kind != "train":
            continue
        spec, details = record.get("spec", {}), record.get("details") or {}
        train = spec.get("train", {})
        first, last = details.get("first_loss"), details.get("train_loss")
        losses = f"{first:.4f} → {last:.4f}" if first is not None and last is not None else "—"
        label_tau = (train.get("loss_params") or {}).get("label_temperature", 1.0)
        setting = spec.get("setting") or name
        lines.append(f"| {name} | {spec.get('loss', '?')} | {train.get('temperature', 1.0):g} | {label_tau:g} | "
                     f"{spec.get('recipe', {}).get('group_size', '?')} | {details.get('global_step', '—')} | "
                     f"{losses} | {descriptions.get(setting, '')} |")
    return "\n".join(lines)


def plot(records: RunRecords, folder: Path, measure: str = "nDCG@10") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    settings, sets, table = scores_by_setting(records)
    for label in sets:
        points = [(s, table[s, label].mean(measure), table[s, label].std(measure) or 0.0)
                  for s in settings if (s, label) in table and table[s, label].mean(measure) is not None]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(points) + 1), 3.6))
        colors = ["#888888" if name == BASE else "#2b6cb0" for name, _, _ in points]
        bars = ax.bar([name for name, _, _ in points], [v for _, v, _ in points], color=colors,
                      yerr=[e for _, _, e in points], capsize=4, error_kw={"elinewidth": 1})
        ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
        ax.set_ylabel(measure + (" (mean ± std over seeds)" if any(e for _, _, e in points) else ""))
        ax.set_title(f"{measure} on {label}")
        ax.set_ylim(0, max(v + e for _, v, e in points) * 1.15)
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
            resolved = resolve_dataset(record["result"].get("dataset") or record["spec"]["dataset"], download=False)
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
    significance = significance_table(records, config)
    if significance.count("\n") > 1:
        lines += ["## Significance", "",
                  "Paired randomization test over queries (10,000 resamples, two-sided) on nDCG@10; a setting "
                  "trained with several seeds is tested on its per-query scores averaged over the seeds.", "",
                  significance, ""]
    lines += [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    fidelity = fidelity_table(records)
    if fidelity:
        lines += ["## Level fidelity", "",
                  "Share of level pairs (per query, higher level vs lower level) that an independent scorer "
                  "orders correctly; 0.5 is chance (see `synthrank.generate.fidelity`).", "", fidelity, ""]
    if any(r["stage"].startswith("train/") for r in records.stages):
        lines += ["## Settings", "", settings_table(records, config), ""]
    lines += ["## Stages", "", stage_table(records), ""]
    lines += ["Every number above is traced in `manifest.json` to its stage, inputs, data hashes and code version.", ""]
    with atomic_write(out / "report.md") as handle:
        handle.write("\n".join(lines))
    with atomic_write(out / "manifest.json") as handle:
        handle.write(json.dumps(manifest(records, run_dir), indent=2, default=str) + "\n")
    return out
