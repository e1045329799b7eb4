"""Deque's axe-core, the accessibility field's own engine, run inside a Playwright page.

from axe import violations
assert violations(page) == []     # each a line: rule, impact, where, what to fix

`scripts/setup test` fetches axe-core from the npm registry into .venv (checked against
the registry's integrity). The page gets it as an inline script tag, which the collector's
content security policy refuses: open the page in a context with `bypass_csp=True`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

AXE = Path(sys.prefix) / "share" / "axe-core" / "axe.min.js"
# WCAG 2.0, 2.1 and 2.2, levels A and AA: what the project promises.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]

RUN = """async tags => {
  // label-content-name-mismatch (WCAG 2.5.3, label in name) is axe's experimental rule,
  // left out by the tags alone; the kiosk's keyboard keys are what it checks.
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                          rules: {'label-content-name-mismatch': {enabled: true}},
                                          resultTypes: ['violations']});
  return {version: axe.version, violations: result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, url: v.helpUrl,
    nodes: v.nodes.map(n => ({target: n.target.map(String).join(' '),
                              html: n.html.slice(0, 160),
                              summary: n.failureSummary}))}))};
}"""


def script() -> Path:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run scripts/setup test (it fetches axe-core)")
    return AXE


def run(page) -> dict:
    """axe's violations on what `page` shows now, as plain data."""
    if not page.evaluate("() => typeof axe === 'object'"):
        page.add_script_tag(path=str(script()))
    return page.evaluate(RUN, TAGS)


def describe(found: list[dict]) -> list[str]:
    """One readable entry per element at fault: what rule, how bad, where, what to do."""
    lines = []
    for v in found:
        for node in v["nodes"]:
            summary = " ".join(node["summary"].split())
            lines.append(
                f"{v['id']} ({v['impact']}) at {node['target']}: {v['help']}. "
                f"{summary} -- {node['html']}"
            )
    return lines


def violations(page) -> list[str]:
    """The WCAG 2.2 A/AA violations axe finds on `page`, as readable lines ([] if none)."""
    return describe(run(page)["violations"])
