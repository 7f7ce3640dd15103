"""The ``if`` option of a processor. OpenSearch evaluates a Painless script; we accept the common null/equality
checks on ``ctx`` fields, joined by ``&&`` / ``||`` (no parentheses):

    ctx.title != null        ctx.meta?.lang == 'en'        ctx.kind != "draft" && ctx.body != null

Anything else is rejected at load time, naming the supported forms.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from processors.document import IngestDocument

SUPPORTED = "ctx.<path> == null | != null | == '<string>' | != '<string>' | == <number> | == true|false, " \
            "joined by && or ||"

_TERM = re.compile(r"""^\s*ctx((?:\??\.[A-Za-z_][A-Za-z0-9_]*)+)\s*(==|!=)\s*"""
                   r"""(null|true|false|-?\d+(?:\.\d+)?|'[^']*'|"[^"]*")\s*$""")

Condition = Callable[[IngestDocument], bool]


def compile_condition(source: Any) -> Condition:
    """Raise ValueError with the supported forms if the script is outside the subset."""
    if isinstance(source, dict):
        if set(source) - {"source", "lang"} or source.get("lang", "painless") != "painless":
            raise ValueError(f"only inline painless conditions are supported ({SUPPORTED})")
        source = source.get("source")
    if not isinstance(source, str):
        raise ValueError(f"property isn't a map or string ({SUPPORTED})")
    alternatives = []
    for alt in source.split("||"):
        terms = []
        for term in alt.split("&&"):
            m = _TERM.match(term)
            if not m:
                raise ValueError(f"unsupported condition [{term.strip()}]; supported: {SUPPORTED}")
            path = m.group(1).replace("?", "").lstrip(".")
            terms.append((path, m.group(2), _literal(m.group(3))))
        alternatives.append(terms)

    def evaluate(doc: IngestDocument) -> bool:
        return any(all((doc.get(p) == v) == (op == "==") for p, op, v in terms) for terms in alternatives)

    return evaluate


def _literal(text: str) -> Any:
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text[0] in "'\"":
        return text[1:-1]
    return float(text) if "." in text else int(text)
