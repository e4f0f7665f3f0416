"""HQ's side of the contract (C4): ``storegw hq watch`` (a terminal viewer), ``storegw hq consume``
(shared-subscription consumers into PostgreSQL or SQLite, with gap repair) and the fleet page's
facade (``gateway.hq.fleet``, served by ``storegw hq serve`` from ``web/fleet``)."""
