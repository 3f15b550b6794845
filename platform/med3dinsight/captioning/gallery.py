"""gallery.html: sampled slices with their captions and quality flags, one self-contained page."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

_STYLE = """
body{font-family:sans-serif;margin:1em;background:#fafafa}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;display:flex;gap:8px}
.card img{image-rendering:pixelated;background:#000;flex:none}
.meta{font-size:11px;color:#555}.cap{font-size:13px;margin-top:4px;word-break:break-word}
.flag{font-size:11px;padding:1px 5px;border-radius:3px;color:#fff}
.ok{background:#2a7}.empty,.failed{background:#c33}.degenerate,.repetitive{background:#d80}
"""


def pick_rows(rows: Sequence[dict[str, Any]], max_rows: int) -> list[dict[str, Any]]:
    """Up to `max_rows` rows spread over volumes and planes (round robin over (volume_id, plane) groups)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["volume_id"], r["plane"]), []).append(r)
    picked: list[dict[str, Any]] = []
    queues = list(groups.values())
    depth = 0
    while len(picked) < max_rows and any(depth < len(q) for q in queues):
        picked += [q[depth] for q in queues if depth < len(q)][: max_rows - len(picked)]
        depth += 1
    return picked


def gallery_html(rows: Sequence[dict[str, Any]], title: str, max_rows: int) -> str:
    """A page of up to `max_rows` cards: PNG thumbnail, (volume, plane, slice, position), flag, caption, error."""
    cards = []
    for r in pick_rows(rows, max_rows):
        image = ""
        if r.get("thumbnail_png"):
            data = base64.b64encode(r["thumbnail_png"]).decode()
            image = f'<img width="128" height="128" src="data:image/png;base64,{data}">'
        error = f'<div class="meta">error: {html.escape(r["error"])}</div>' if r.get("error") else ""
        cards.append(
            f'<div class="card">{image}<div><div class="meta">{html.escape(r["volume_id"][:16])} · {r["plane"]} '
            f'#{r["slice_index"]} · {100 * r["position"]:.0f}% · {html.escape(r["modality"] or "?")}</div>'
            f'<span class="flag {r["quality"]}">{r["quality"]}</span>'
            f'<div class="cap">{html.escape(r["caption"] or "")}</div>{error}</div></div>'
        )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["quality"]] = counts.get(r["quality"], 0) + 1
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h2>{html.escape(title)}</h2>"
        f"<p>{len(rows)} captions ({summary}); showing {len(cards)}.</p><div class='grid'>{''.join(cards)}</div>"
        "</body></html>"
    )
