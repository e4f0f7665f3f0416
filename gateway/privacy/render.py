"""The data inventory as text (``storegw privacy inventory``) and as the generated part of
docs/privacy.md (``storegw privacy inventory --markdown``; tests/privacy/test_inventory.py checks the
committed file matches)."""

from __future__ import annotations

from gateway.core.inventory import Inventory

BEGIN = "<!-- BEGIN GENERATED: storegw privacy inventory --markdown -->"
END = "<!-- END GENERATED: storegw privacy inventory --markdown -->"


def text(inventory: Inventory, *, personal_only: bool = False) -> str:
    """One block per table: personal columns in full, the others on one line."""
    out = []
    for t in inventory:
        out.append(f"{t.name}  [{t.owner}]  {t.description}")
        for c in t.columns:
            if not c.personal:
                continue
            flags = ", ".join(f for f, on in (("leaves store", c.leaves_store), ("encrypted", c.encrypted)) if on)
            out.append(f"  {c.name:<12} {c.category:<32} {c.basis:<18} mask {c.mask:<10} {c.retention.text}"
                       + (f"  ({flags})" if flags else ""))
        others = [c.name for c in t.columns if not c.personal]
        if others and not personal_only:
            cats = sorted({c.category for c in t.columns if not c.personal})
            rules = sorted({c.retention.text for c in t.columns if not c.personal})
            out.append(f"  other columns ({', '.join(cats)}; {'; '.join(rules)}): {' '.join(others)}")
        if t.subjects:
            out.append("  subjects: " + ", ".join(h.help for h in t.subjects))
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(inventory: Inventory) -> str:
    """The generated block of docs/privacy.md (between BEGIN and END)."""
    lines = [BEGIN, "", "### Personal data, column by column", "",
             "| table | column | category | purpose | legal basis | retention | mask | leaves store | encrypted |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t, c in inventory.columns():
        if c.personal:
            lines.append(f"| `{t.name}` | `{c.name}` | `{c.category}` | {_cell(c.purpose)} | {c.basis} | "
                         f"{_cell(c.retention.text)} | `{c.mask}` | {'yes' if c.leaves_store else 'no'} | "
                         f"{'yes' if c.encrypted else 'no'} |")
    lines += ["", "### Every table", "",
              "| table | declared by | what it holds | personal columns | row retention |", "|---|---|---|---|---|"]
    for t in inventory:
        personal = ", ".join(f"`{c.name}`" for c in t.personal) or "none"
        rules = sorted({c.retention.text for c in t.columns if not c.personal}) or \
            sorted({c.retention.text for c in t.columns})
        lines.append(f"| `{t.name}` | {t.owner} | {_cell(t.description)} | {personal} | {_cell('; '.join(rules))} |")
    lines += ["", "### Data subjects", "", "| kind | answered by |", "|---|---|"]
    for kind in inventory.kinds():
        hooks = inventory.subjects(kind)
        lines.append(f"| `{kind}` | {_cell('; '.join(h.help for h in hooks))} |")
    lines += ["", END]
    return "\n".join(lines)


def splice(document: str, block: str) -> str:
    """Replace the generated block of ``document`` (between the markers) with ``block``."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < 0:
        raise ValueError("docs/privacy.md has no generated block (BEGIN/END markers)")
    return document[:start] + block + document[end + len(END):]
