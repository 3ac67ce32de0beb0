"""The one table: scenario | figure | faultline | peer | peer name | ratio | target | met?,
printed, and written as Markdown and JSON."""

import json

COLUMNS = ["scenario", "figure", "faultline", "peer", "peer name", "ratio", "target", "met?"]


def fmt(value, spec):
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return spec.format(value)


def _ratio(r):
    # Two decimals where a target is judged near 1.0; two significant digits for far smaller.
    return f"{r:.2f}" if abs(r) >= 0.1 else f"{r:.2g}"


class Table:
    def __init__(self):
        self.rows = []  # displayed strings
        self.raw = []  # numbers, for the JSON

    def add(self, scenario, figure, fl, peer=None, peer_name="", spec="{:.1f}", target="",
            met=None, ratio="auto"):
        """`fl` and `peer` are numbers (formatted with `spec`) or strings; the ratio is
        faultline / peer when both are numbers, unless given."""
        if ratio == "auto":
            num = isinstance(fl, (int, float)) and isinstance(peer, (int, float))
            ratio = fl / peer if num and peer else None
        self.rows.append([
            scenario,
            figure,
            fmt(fl, spec),
            "" if peer is None and not peer_name else fmt(peer, spec),
            peer_name,
            "" if ratio is None else (ratio if isinstance(ratio, str) else _ratio(ratio)),
            target,
            {True: "yes", False: "NO", None: ""}[met],
        ])
        self.raw.append({
            "scenario": scenario, "figure": figure, "faultline": fl, "peer": peer,
            "peer_name": peer_name, "ratio": ratio, "target": target, "met": met,
        })

    def text(self):
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(COLUMNS)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out = [line(COLUMNS), line(["-" * w for w in widths])]
        out += [line(r) for r in self.rows]
        return "\n".join(out)

    def markdown(self):
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in self.rows]
        return "\n".join(out)

    def json(self, meta):
        return json.dumps({"meta": meta, "rows": self.raw}, indent=2)
