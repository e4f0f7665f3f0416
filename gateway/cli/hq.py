"""``storegw hq``: the HQ side (watch; the consumer, the fleet view and claim codes live here too)."""

from __future__ import annotations

import click

from gateway.clikit import handle_errors


@click.group("hq")
def hq() -> None:
    """Tools that act as HQ (for technicians and tests)."""


@hq.command("watch")
@click.option("--host", default="127.0.0.1", show_default=True, help="HQ broker host.")
@click.option("--port", default=1883, show_default=True, type=int, help="HQ broker port.")
@click.option("--prefix", default="storegw/v1", show_default=True, help="Topic prefix (uplink.topic_prefix).")
@click.option("--store", "store_id", default="+", show_default=True, help="Store id, or + for all stores.")
@click.option("--tls", is_flag=True, help="Use TLS.")
@click.option("--ca-file", default="", help="CA bundle for --tls.")
@click.option("--count", type=int, default=0, help="Exit after this many messages (0: until Ctrl-C).")
@click.option("--checkpoints", type=click.Path(file_okay=False), default="",
              help="Keep each store's audit checkpoints in this directory: STORE.json (latest), STORE.jsonl (all).")
@handle_errors
def hq_watch(host: str, port: int, prefix: str, store_id: str, tls: bool, ca_file: str, count: int,
             checkpoints: str) -> None:
    """Print every message HQ receives, one line each: topic and JSON.

    With --checkpoints DIR it also keeps, as HQ would, the latest audit checkpoint of each store
    (DIR/STORE.json) and all of them (DIR/STORE.jsonl), and warns when a store's chain goes
    backwards or forks; hand the file to `storegw audit verify --checkpoint`.

    \b
    Example:
      storegw hq watch --host hq.example.com --port 8883 --tls --prefix storegw/v1 --store sh-001
      storegw hq watch --port 1884 --checkpoints /tmp/hq-checkpoints
    """
    from gateway.hq.watch import watch

    watch(host, port, prefix, store_id, tls=tls, ca_file=ca_file, count=count, out=click.echo,
          checkpoints=checkpoints)
