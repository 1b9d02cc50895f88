"""IR metrics through ir_measures (pytrec_eval underneath), with graded qrels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import ir_measures

DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@100")


def parse_measures(names: Iterable[str]) -> list:
    """Parse measure names such as ``nDCG@10``, ``RR(rel=2)@10``, ``AP`` or ``P@5``."""
    measures = []
    examples = "examples: nDCG@10, RR@10, R@100, AP, P@5"
    for name in names:
        try:
            measure = ir_measures.parse_measure(name.strip())
        except (ValueError, NameError, TypeError, SyntaxError) as error:
            raise ValueError(f"unknown measure {name!r} ({error}); {examples}") from None
        cutoff = measure.params.get("cutoff")
        # pytrec_eval aborts the whole process on a cutoff below 1 (nDCG@0)
        if cutoff is not None and (not isinstance(cutoff, int) or cutoff < 1):
            raise ValueError(f"measure {name!r}: the cutoff after '@' must be a whole number >= 1; {examples}")
        measures.append(measure)
    if not measures:
        raise ValueError(f"no measure given; {examples}")
    return measures


def retrieval_depth(measures: Iterable) -> int:
    """How many hits a run needs so that every cutoff measure is exact (1000 if one has none)."""
    depth = 100
    for measure in measures:
        cutoff = measure.params.get("cutoff")
        depth = max(depth, cutoff if cutoff else 1000)
    return depth


def compute_metrics(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    measure_names: Iterable[str] = DEFAULT_MEASURES,
    query_ids: Iterable[str] | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean and per-query values, averaged over ``query_ids`` (default: every judged query).

    pytrec_eval leaves out queries that have no hit at all; here such a query scores 0, so a
    system cannot gain by returning nothing for a hard query.
    """
    measures = parse_measures(measure_names)
    evaluated = list(query_ids) if query_ids is not None else list(qrels)
    per_query: dict[str, dict[str, float]] = {qid: {str(m): 0.0 for m in measures} for qid in evaluated}
    nonempty_run = {qid: dict(hits) for qid, hits in run.items() if hits and qid in per_query}
    judged = {qid: dict(j) for qid, j in qrels.items() if qid in per_query}
    for metric in ir_measures.iter_calc(measures, judged, nonempty_run):
        per_query[metric.query_id][str(metric.measure)] = float(metric.value)
    count = max(len(evaluated), 1)
    means = {str(m): sum(values[str(m)] for values in per_query.values()) / count for m in measures}
    return means, per_query
