"""Export a generation store as a BEIR folder with a manifest.

``corpus.jsonl`` (ids ``<qid>-L<level>-<k>``), ``queries.jsonl``, ``qrels/train.tsv`` with the
levels as grades, and ``manifest.json`` (backend, model, prompt hash, parameters, counts,
failures with reasons, tokens in and out, wall time). Files are written atomically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from synthrank import __version__
from synthrank.data import write_corpus, write_qrels, write_queries
from synthrank.utils import atomic_write
from synthrank.generate.runner import item_id, reason_kind
from synthrank.generate.store import Store


def export_beir(store: Store, fingerprint: str, folder: str | Path, split: str = "train",
                extra: dict | None = None) -> dict:
    """Write the BEIR folder for one run fingerprint; returns the manifest."""
    folder = Path(folder)
    config = store.config(fingerprint)
    params = config["parameters"]
    grades = [lv["grade"] for lv in params["levels"]]
    per_level = params["per_level"]
    queries = store.queries(fingerprint)
    done = {}
    failures = []
    for item in store.items(fingerprint):
        if item.qid not in queries:
            continue
        if item.status == "done":
            done[(item.qid, item.level, item.k)] = item.text
        else:
            failures.append({"id": item_id(item.qid, item.level, item.k), "query_id": item.qid, "level": item.level,
                             "index": item.k, "attempts": item.attempts, "reason": item.reason})
    # Grounded mode: the top level of each query is its real reference passage, not generated.
    references = config.get("references") or {}
    top = max(grades)
    for qid, ref in references.items():
        if qid in queries:
            done[(qid, top, 0)] = ref["text"]
    titles = {(qid, top, 0): ref.get("title", "") for qid, ref in references.items()}

    def slots(grade: int) -> int:  # passages per level and query (one reference at the top level)
        return 1 if references and grade == top else per_level

    failed_keys = {(f["query_id"], f["level"], f["index"]) for f in failures}
    passages, qrels, missing = [], {}, []
    per_grade = {g: {"done": 0, "failed": 0, "missing": 0} for g in grades}
    for qid in queries:
        for grade in grades:
            for k in range(slots(grade)):
                key = (qid, grade, k)
                if key in done:
                    pid = item_id(qid, grade, k)
                    passages.append({"_id": pid, "title": titles.get(key, ""), "text": done[key]})
                    qrels.setdefault(qid, {})[pid] = grade
                    per_grade[grade]["done"] += 1
                elif key in failed_keys:
                    per_grade[grade]["failed"] += 1
                else:
                    per_grade[grade]["missing"] += 1
                    missing.append(item_id(qid, grade, k))
    write_corpus(folder / "corpus.jsonl", passages)
    write_queries(folder / "queries.jsonl", queries)
    write_qrels(folder / "qrels" / f"{split}.tsv", qrels)
    totals = store.totals(fingerprint)
    expected = len(queries) * sum(slots(g) for g in grades)
    reasons: dict[str, int] = {}
    for f in failures:
        last = reason_kind(f["reason"])
        reasons[last] = reasons.get(last, 0) + 1
    manifest = {
        "synthrank_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "fingerprint": fingerprint,
        "backend": config["backend"].get("backend"),
        "model": config["backend"].get("model"),
        "backend_identity": config["backend"],
        "prompt_hash": config["prompt_hash"],
        "parameters": params,
        "counts": {
            "queries": len(queries),
            "queries_complete": sum(all((q, g, k) in done for g in grades for k in range(slots(g))) for q in queries),
            "expected_passages": expected,
            "passages": len(passages),
            "failed": len(failures),
            "missing": len(missing),
            "success_rate": round(len(passages) / expected, 4) if expected else None,
            "by_level": {str(g): per_grade[g] for g in grades},
            "failure_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        },
        "tokens_in": totals["tokens_in"],
        "tokens_out": totals["tokens_out"],
        "requests": totals["requests"],
        "request_errors": totals["request_errors"],
        "wall_seconds": totals["wall_seconds"],
        "sessions": totals["sessions"],
        "failures": failures,
        "missing": missing,
        "files": {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": f"qrels/{split}.tsv",
                  "store": store.path.name},
    }
    if references:
        manifest["grounded"] = {
            "reference_level": top,
            "references": sum(qid in queries for qid in references),
            "reference_ids": {qid: ref["doc_id"] for qid, ref in references.items() if qid in queries},
            "note": f"level {top} passages are the real reference passages; the other levels were generated from them",
        }
    if extra:
        manifest.update(extra)
    with atomic_write(folder / "manifest.json") as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return manifest
