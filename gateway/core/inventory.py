"""The data inventory: what every table and column holds, why, on what legal basis, for how long.

Standard library only, so every floor can declare its own tables: the store's in
``gateway/store/inventory.py``, each domain in its ``schema.py`` (or beside it), all gathered by
``gateway.domains.INVENTORY``. A test introspects a freshly migrated database and fails on any
column that is not declared here, personal or not (non-personal columns are declared as
``system.operations``), so "not declared" is always a mistake (issue 10, item 1).

A column says:

- ``category``: a Fides (fideslang) data category, e.g. ``user.contact.phone_number``,
  ``user.name``, ``user.content.free_text``, ``system.operations``;
- ``purpose`` (free text) and ``basis``: the PIPL Art. 13 legal basis;
- ``retention``: a :class:`Retention` rule, executable (the retention job applies it) and
  readable ("30d after the table session closes");
- ``mask``: how screens, tickets and logs show it (a function name of the masking module
  ``gateway/core/masking.py``, or ``none``, ``hidden``, ``redact``);
- ``leaves_store``: whether it may be sent upstream (HQ) at all;
- ``encrypted``: whether it is field-encrypted on top of SQLCipher (and ``index``: its blind index
  column), see ``gateway/privacy/fields.py``.

A table may also declare **subject hooks**: how to find, export and erase everything it holds about
one person (``staff:NAME``, ``queue:A12``...), used by ``storegw privacy export|erase``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

DAY_MS = 86_400_000

# PIPL Art. 13 legal bases (the ones a store uses).
CONSENT = "consent"                      # 13(1)
CONTRACT = "contract"                    # 13(2): needed to conclude or perform a contract with the person
EMPLOYMENT = "employment"                # 13(2): human-resources management under labour rules
LEGAL_OBLIGATION = "legal obligation"    # 13(3)
NONE = "not personal data"               # system columns: no basis needed
BASES = (CONSENT, CONTRACT, EMPLOYMENT, LEGAL_OBLIGATION, NONE)

# How a value is shown: a masking function's name, or one of these.
SHOW = "none"        # shown as is (not personal, or the person's own choice of alias shown to staff)
HIDDEN = "hidden"    # never shown (secrets, hashes, tokens)
REDACT = "redact"    # free text: passes the PII recognisers (tripwires) before any display or upstream

NON_PERSONAL_PREFIXES = ("system.",)


@dataclass(frozen=True)
class Retention:
    """A retention rule, readable and executable.

    ``days``: how long after ``clock`` (an SQL expression in epoch ms on the row, e.g.
    ``closed_ms`` or a sub-select of the session's close time) the value is kept; None: no time
    limit here (``text`` says what ends it: the account, another job). ``action``: ``delete`` the
    row, or ``blank`` the column (set to ``blank``) where the row is an aggregate that must stay.
    ``where``: an extra SQL condition a row must meet to be due (e.g. the session is closed).
    A row is due when ``clock + days < now`` (strictly: a row exactly ``days`` old is kept).
    """

    text: str
    days: float | None = None
    clock: str = ""
    action: str = "delete"
    where: str = ""
    blank: Any = ""
    managed_by: str = ""   # another job applies it (e.g. telemetry retention); the retention job does not
    due: str = ""          # the same test in a form an index serves ("session_id IN (SELECT ...)"; one ?)

    def __post_init__(self) -> None:
        if self.action not in ("delete", "blank"):
            raise ValueError(f"retention action {self.action!r}: delete or blank")
        if self.days is not None and not self.clock:
            raise ValueError(f"retention {self.text!r}: a time limit needs the column it counts from")

    @property
    def executable(self) -> bool:
        """Whether the retention job applies this rule (a time limit it owns)."""
        return self.days is not None and not self.managed_by

    def cutoff_ms(self, now_ms: int) -> int:
        """Rows whose clock is strictly below this are due."""
        assert self.days is not None
        return now_ms - round(self.days * DAY_MS)

    def blanked(self, **changes: Any) -> Retention:
        """This rule as a ``blank`` rule (same clock and condition)."""
        return replace(self, action="blank", **changes)


def after(days: float, clock: str, text: str, *, where: str = "", action: str = "delete", blank: Any = "",
          due: str = "") -> Retention:
    """A time-limited rule: ``days`` after ``clock`` (``due``: the same test in a form an index serves)."""
    return Retention(text, days, clock, action, where, blank, due=due)


def until(text: str) -> Retention:
    """No time limit of its own: ``text`` says what ends it (an account, a configuration)."""
    return Retention(text)


def managed(text: str, by: str, days: float | None = None, clock: str = "") -> Retention:
    """A limit another job enforces (``by`` names it), declared here so the inventory is complete."""
    return Retention(text, days, clock, managed_by=by)


@dataclass(frozen=True)
class Column:
    """One declared column."""

    name: str
    category: str
    purpose: str
    basis: str
    retention: Retention
    mask: str = SHOW
    leaves_store: bool = False
    encrypted: bool = False
    index: str = ""        # the blind-index column of an encrypted field
    note: str = ""

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"column {self.name}: legal basis {self.basis!r} is not one of {BASES}")
        if not self.category or "." not in self.category:
            raise ValueError(f"column {self.name}: category {self.category!r} is not a Fides category")
        if self.personal and self.basis == NONE:
            raise ValueError(f"column {self.name}: personal data ({self.category}) needs a legal basis")

    @property
    def personal(self) -> bool:
        """Whether the column holds personal data (any category outside ``system.``)."""
        return not self.category.startswith(NON_PERSONAL_PREFIXES)


@dataclass(frozen=True)
class Erasure:
    """What erasing one subject from one domain did or could not do (PIPL Art. 47)."""

    erased: dict[str, int] = field(default_factory=dict)           # table -> rows deleted or blanked
    retained: list[dict[str, Any]] = field(default_factory=list)   # {"table", "rows", "basis", "until", "why"}


@dataclass(frozen=True)
class SubjectHook:
    """How one domain finds, exports and erases what it holds about one kind of subject.

    ``kind``: the prefix of ``KIND:VALUE`` (``staff``, ``queue``, ``diner``, later ``phone``/``id``
    through blind indexes). ``export(conn, value)`` returns {table: [row dicts]} (empty when the
    domain holds nothing); ``erase(conn, value, now_ms)`` deletes or blanks inside the caller's
    transaction and returns an :class:`Erasure`; ``values(conn)`` lists every subject value of this
    kind the domain holds now, so erasures can be re-applied after a restore from keyed hashes
    alone (the tombstones never hold a value).
    """

    kind: str
    help: str
    export: Callable[[Any, str], dict[str, list[dict[str, Any]]]]
    erase: Callable[[Any, str, int], Erasure]
    values: Callable[[Any], Iterable[str]]
    normalise: Callable[[str], str] = str.strip


@dataclass(frozen=True)
class Table:
    """One declared table: its columns (every one of them) and the subjects it can answer for."""

    name: str
    description: str
    columns: tuple[Column, ...]
    created: str = ""         # SQL expression (epoch ms) of when a row came to be: "oldest record" in reports
    owner: str = ""           # the floor or domain that declares it (set by Inventory)
    subjects: tuple[SubjectHook, ...] = ()

    def column(self, name: str) -> Column:
        """The declared column ``name`` (KeyError when undeclared)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name}.{name}")

    @property
    def personal(self) -> tuple[Column, ...]:
        """The columns holding personal data."""
        return tuple(c for c in self.columns if c.personal)


def ops(names: str, retention: Retention, purpose: str = "operations", *,
        category: str = "system.operations") -> tuple[Column, ...]:
    """Non-personal columns (whitespace-separated ``names``) sharing one category and rule."""
    return tuple(Column(n, category, purpose, NONE, retention) for n in names.split())


@dataclass(frozen=True)
class Declaration:
    """What one floor or domain declares: its tables and the subject hooks not tied to one table."""

    owner: str
    tables: tuple[Table, ...]
    subjects: tuple[SubjectHook, ...] = ()


class Inventory:
    """Every declaration of this build, gathered (``gateway.domains.INVENTORY``)."""

    def __init__(self, declarations: Sequence[Declaration]) -> None:
        self.declarations = tuple(declarations)
        tables: dict[str, Table] = {}
        for decl in declarations:
            for table in decl.tables:
                if table.name in tables:
                    raise ValueError(f"table {table.name} declared twice ({tables[table.name].owner}, {decl.owner})")
                names = [c.name for c in table.columns]
                dup = {n for n in names if names.count(n) > 1}
                if dup:
                    raise ValueError(f"{table.name}: columns declared twice: {sorted(dup)}")
                tables[table.name] = replace(table, owner=decl.owner)
        self.tables = tables

    def __iter__(self) -> Iterator[Table]:
        return iter(self.tables.values())

    def table(self, name: str) -> Table:
        """The declared table ``name`` (KeyError when undeclared)."""
        return self.tables[name]

    def columns(self) -> Iterator[tuple[Table, Column]]:
        """Every (table, column)."""
        for table in self:
            for col in table.columns:
                yield table, col

    def subjects(self, kind: str | None = None) -> list[SubjectHook]:
        """Every subject hook (of one ``kind``), in declaration order."""
        hooks = [h for d in self.declarations for h in d.subjects]
        hooks += [h for t in self for h in t.subjects]
        return [h for h in hooks if kind is None or h.kind == kind]

    def kinds(self) -> list[str]:
        """The subject kinds some domain can answer for."""
        return list(dict.fromkeys(h.kind for h in self.subjects()))

    def gaps(self, schema: dict[str, list[str]]) -> tuple[list[str], list[str]]:
        """Compare with a database's tables and columns ({table: [columns]}, SQLite's own tables left
        out): (columns in the database but not declared, declared but not in the database)."""
        undeclared = [f"{t}.{c}" for t, cols in schema.items() for c in cols
                      if t not in self.tables or c not in {x.name for x in self.tables[t].columns}]
        stale = [f"{t.name}.{c.name}" for t, c in self.columns()
                 if t.name in schema and c.name not in schema[t.name]]
        return undeclared, stale

    def encrypted(self) -> list[tuple[str, str]]:
        """(table, column) of every field-encrypted column: what ``gateway/privacy/fields.py`` must list."""
        return [(t.name, c.name) for t, c in self.columns() if c.encrypted]

    def categories(self) -> list[str]:
        """The personal data categories held, sorted."""
        return sorted({c.category for _, c in self.columns() if c.personal})

    def as_json(self) -> list[dict[str, Any]]:
        """The inventory as plain data (``storegw privacy inventory --json``)."""
        out = []
        for t in self:
            out.append({
                "table": t.name, "owner": t.owner, "description": t.description,
                "subjects": [h.kind for h in t.subjects],
                "columns": [{"column": c.name, "category": c.category, "personal": c.personal,
                             "purpose": c.purpose, "basis": c.basis, "retention": c.retention.text,
                             "retention_days": c.retention.days, "retention_from": c.retention.clock or None,
                             "retention_action": c.retention.action if c.retention.days is not None else None,
                             "retention_by": c.retention.managed_by or ("privacy retention"
                                                                      if c.retention.executable else None),
                             "mask": c.mask, "leaves_store": c.leaves_store, "encrypted": c.encrypted,
                             **({"index": c.index} if c.index else {}), **({"note": c.note} if c.note else {})}
                            for c in t.columns]})
        return out
