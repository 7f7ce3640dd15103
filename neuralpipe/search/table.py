"""The ranked table ``neuralpipe search`` and the demo print: rank, score, id and a snippet per hit."""

from __future__ import annotations

import shutil
import textwrap
from typing import Any


def snippet(source: dict[str, Any], text_fields: tuple[str, ...], width: int) -> str:
    parts: list[str] = []
    for name in text_fields or ():
        value = source.get(name)
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
    if not parts:  # no known text field: the first strings of the document
        parts = [v for v in source.values() if isinstance(v, str) and v.strip()][:2]
    text = " | ".join(" ".join(p.split()) for p in parts)
    return textwrap.shorten(text, width=max(width, 20), placeholder=" …") if text else ""


def format_table(response: dict[str, Any], *, text_fields: tuple[str, ...] = (), width: int | None = None,
                 title: str | None = None) -> str:
    """rank | score | id | snippet, one line per hit, sized to the terminal."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    hits = response.get("hits", {}).get("hits", [])
    total = response.get("hits", {}).get("total")
    total_n = total.get("value") if isinstance(total, dict) else total
    lines = []
    if title:
        lines.append(title)
    if not hits:
        lines.append("  (no hits)")
        return "\n".join(lines)
    id_w = min(max(len(str(h.get("_id"))) for h in hits), 24)
    head = f"{'rank':>4}  {'score':>9}  {'id':<{id_w}}  snippet"
    lines.append(head)
    lines.append("-" * min(width, max(len(head), 60)))
    snip_w = max(width - (4 + 2 + 9 + 2 + id_w + 2), 30)
    for rank, hit in enumerate(hits, start=1):
        score = hit.get("_score")
        score_s = f"{score:9.4f}" if isinstance(score, (int, float)) else f"{'-':>9}"
        doc_id = str(hit.get("_id"))
        if len(doc_id) > id_w:
            doc_id = doc_id[: id_w - 1] + "…"
        text = snippet(hit.get("_source") or {}, text_fields, snip_w)
        lines.append(f"{rank:>4}  {score_s}  {doc_id:<{id_w}}  {text}")
    if total_n is not None:
        lines.append(f"({len(hits)} of {total_n} hits, took {response.get('took', '?')} ms)")
    return "\n".join(lines)
