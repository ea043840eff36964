"""Write the tables of benchmarks/RESULTS.md from the raw JSON the benchmarks saved beside it.

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->` in RESULTS.md and is
made from `benchmarks/NAME.json` (NAME: quality, crash, crash-run1, serve_load, serve_load-sync, negatives,
negatives-arms, encode_multilingual); the text around the markers is written by hand.

    .venv/bin/python benchmarks/tables.py          # rewrites RESULTS.md in place
    .venv/bin/python benchmarks/tables.py --check  # exit 1 if RESULTS.md is not up to date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
_FAULTS = ["lost_events", "resurrected_users", "partial_batches", "duplicates", "zero_vectors", "wrong_popularity"]


def provenance(data: dict) -> str:
    machine = data.get("machine", {})
    flags = ", ".join(machine.get("flags", [])) or "none of avx2/avx512/vnni/amx"
    return f"_Commit `{data.get('commit', '?')[:10]}`; {machine.get('cpu', '?')} ({flags}); Python {machine.get('python', '?')}._"


def crash(data: dict) -> str:
    rows = data["trials"]
    lines = ["| operation killed | trials | acknowledged writes | " + " | ".join(k.replace("_", " ") for k in _FAULTS) + " |",
             "|---|---|---|" + "---|" * len(_FAULTS)]
    for op in dict.fromkeys(r["op"] for r in rows):
        mine = [r for r in rows if r["op"] == op]
        lines.append(f"| {op} | {len(mine)} | {sum(r['acked_writes'] for r in mine)} | "
                     + " | ".join(str(sum(r[k] for r in mine)) for k in _FAULTS) + " |")
    return "\n".join(lines)


def serve_load(data: dict) -> str:
    mixed, batched, paced = data["mixed"], data["batched"], data.get("paced")
    single = data.get("single", mixed)  # runs before the single-event phase measured it in the mixed phase
    phases = [mixed, single, batched] if "single" in data else [mixed, batched]
    shown = sum(p["not_reflected_in_next_recommendation"] for p in phases)
    missing = sum(p["missing_from_profiles"] for p in phases)
    return "\n".join([
        f"{data['items']:,} items, {data['users']} MovieLens users' histories, {data['clients']} concurrent clients, "
        f"summaries and popularity updated: {data.get('updates', 'sync')}.",
        "",
        "| measure | figure | target |",
        "|---|---|---|",
        f"| recommendations while events stream in, saturated (8 clients back to back): p50 / p99 | {mixed['rec_p50_ms']} ms / **{mixed['rec_p99_ms']} ms** ({mixed['recommendations']} requests) | p99 <= 50 ms |",
        *([f"| recommendations while events stream in, paced ({paced['recommendations_per_s']} recommendations/s and {paced['events_per_s']} events/s): "
           f"p50 / p90 / p99 | {paced['rec_p50_ms']} / {paced['rec_p90_ms']} / **{paced['rec_p99_ms']} ms** ({paced['recommendations']} requests) | p99 <= 50 ms |"]
          if paced else []),
        f"| events posted one per request | **{single['events_per_s_single']}/s** ({single['events_posted_one_per_request']} events) | >= 200/s |",
        f"| events posted in batches of 100 | **{batched['events_per_s_batched']}/s** ({batched['events_posted_in_batches']} events) | >= 2,000/s |",
        f"| events not reflected by the user's next recommendation | {shown} | 0 |",
        f"| events missing from profiles afterwards | {missing} | 0 |",
        f"| errors | {data['errors']} | 0 |",
    ])


def negatives(data: dict) -> str:
    lines = ["| arm | users | dislike events | R@10 (SE) | NDCG@10 (SE) |", "|---|---|---|---|---|"]
    for r in data["arms"]:
        lines.append(f"| {r['arm']} | {r['users']} | {r['dislike_events']:,} | {r['R@10']:.4f} ({r['R@10_se']:.4f}) | {r['NDCG@10']:.4f} ({r['NDCG@10_se']:.4f}) |")
    return "\n".join(lines)


def encode_multilingual(data: dict) -> str:
    lines = ["| model | backend (asked -> used) | dim | texts/s | vs MiniLM torch | query p50 ms | load s |",
             "|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['model']} | {r['asked_backend']} -> {r['backend']} | {r['dim']} | {r['texts_per_s']:,.0f} | "
                     f"{r['vs_minilm_torch']:.2f}x | {r['query_p50_ms']} | {r['load_s']} |")
    return "\n".join(lines)


def quality(data: dict) -> str:
    from semrec.evaluation import markdown  # the report's own Markdown, as `semrec evaluate` prints it

    return markdown({k: v for k, v in data.items() if k not in ("commit", "machine")}).strip()


RENDER = {
    "quality": quality,
    "crash": crash, "crash-run1": crash, "serve_load": serve_load, "serve_load-sync": serve_load, "negatives": negatives,
    "negatives-arms": negatives, "encode_multilingual": encode_multilingual,
}


def render(text: str) -> str:
    def table(match: re.Match) -> str:
        name = match.group(1)
        path = HERE / f"{name}.json"
        if not path.exists():
            return match.group(0)
        data = json.loads(path.read_text())
        return f"<!-- table:{name} -->\n{RENDER[name](data)}\n\n{provenance(data)}\n<!-- /table:{name} -->"

    return re.sub(r"<!-- table:([\w-]+) -->.*?<!-- /table:\1 -->", table, text, flags=re.S)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = RESULTS.read_text()
    new = render(text)
    if args.check:
        sys.exit(0 if new == text else 1)
    RESULTS.write_text(new)


if __name__ == "__main__":
    main()
