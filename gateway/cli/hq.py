"""``storegw hq``: the HQ side (watch; the consumer, the fleet view and claim codes live here too)."""

from __future__ import annotations

from pathlib import Path

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


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isascii() or not port.isdigit():
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, e.g. hq-broker.example.com:1883")
    return host, int(port)


@hq.command("consume")
@click.option("--db", required=True, help="HQ database: postgresql://USER@HOST:PORT/DB, or sqlite:///PATH "
              "(embedded, for a demo).")
@click.option("--broker", required=True, help="HQ broker HOST:PORT (MQTT 5, shared subscriptions).")
@click.option("--group", default="hq", show_default=True, help="Shared-subscription group ($share/GROUP/...).")
@click.option("--prefix", default="storegw/v1", show_default=True, help="Topic prefix (uplink.topic_prefix).")
@click.option("--client-id", default="", help="Fixed MQTT client id of this instance, so a restart resumes "
              "its session; give every instance its own (default hq-GROUP-HOSTNAME).")
@click.option("--batch", default=500, show_default=True, type=int, help="Messages written per transaction at most.")
@click.option("--flush", default=0.2, show_default=True, type=float, help="Seconds a batch waits to fill up.")
@click.option("--repair-grace", default=10.0, show_default=True, type=float,
              help="Seconds after a store's manifest arrives before HQ checks it and asks for what is missing.")
@click.option("--tls", is_flag=True, help="Use TLS.")
@click.option("--ca-file", default="", help="CA bundle for --tls.")
@click.option("--username", default="", help="Username at the broker.")
@click.option("--password-file", default="", help="File holding the broker password.")
@handle_errors
def hq_consume(db: str, broker: str, group: str, prefix: str, client_id: str, batch: int, flush: float,
               repair_grace: float, tls: bool, ca_file: str, username: str, password_file: str) -> None:
    """Consume every store's messages into HQ's database (run any number of instances).

    Joins the shared subscription $share/GROUP/PREFIX/+/#, validates each message against its
    JSON Schema (invalid ones go to hq_dead_letters with the reason), upserts a row per id at its
    highest rev in batches, and acknowledges to the broker only after the transaction commits.
    Compares the stores' manifests with the database and asks stores to re-send what is missing
    (PREFIX/STORE/cmd/resend). Stops on Ctrl-C or SIGTERM after writing what it read.

    \b
    Example:
      storegw hq consume --db postgresql://hq@db.example.com/hq --broker hq-broker.example.com:1883 \\
          --group hq --client-id hq-consume-1
      storegw hq consume --db sqlite:///tmp/hq.db --broker 127.0.0.1:1884
    """
    import signal
    import threading

    from gateway.hq.consume import Consumer
    from gateway.hq.databases import open_sink

    host, port = _host_port(broker)
    sink = open_sink(db, grace=repair_grace)
    consumer = Consumer(sink, host, port, group=group, prefix=prefix, client_id=client_id, batch=batch,
                        flush_s=flush, tls=tls, ca_file=ca_file, username=username, password_file=password_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer.start()
    click.echo(f"# consuming $share/{group}/{consumer.prefix}/+/# on {broker} into {sink.backend} "
               f"as {consumer.client_id}", err=True)
    try:
        consumer.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.stop()
        sink.close()


@hq.command("serve")
@click.option("--db", required=True, help="HQ database (as for `storegw hq consume`).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8090, show_default=True, type=int, help="Port to listen on.")
@click.option("--refresh", default=2, show_default=True, type=int, help="Seconds between page refreshes.")
@handle_errors
def hq_serve(db: str, host: str, port: int, refresh: int) -> None:
    """Serve the fleet page (stores online/offline, alerts, summaries, reports, backlog) and /metrics.

    \b
    Example:
      storegw hq serve --db postgresql://hq@db.example.com/hq --host 0.0.0.0 --port 8090
      storegw hq serve --db sqlite:///tmp/hq.db
    """
    import waitress

    from gateway.hq.databases import open_sink
    from web.fleet import create_app

    sink = open_sink(db)
    click.echo(f"# fleet page on http://{host}:{port}/ (metrics: /metrics)", err=True)
    try:
        waitress.serve(create_app(sink, refresh=refresh), host=host, port=port, threads=4, _quiet=True)
    finally:
        sink.close()


HQ_DIR = click.option("--dir", "hq_dir", default="/var/lib/storegw-hq", show_default=True,
                      type=click.Path(file_okay=False), help="HQ's directory: its CA and the claim codes (0700).")


@hq.command("claim")
@click.option("--store", "store_id", required=True, help="Store id the code provisions, e.g. sh-001.")
@click.option("--name", "store_name", default="", help="Store name given to the board.")
@click.option("--timezone", default="Asia/Shanghai", show_default=True, help="The store's IANA time zone.")
@click.option("--hq-host", required=True, help="HQ broker host the board will use.")
@click.option("--hq-port", default=8883, show_default=True, type=int, help="HQ broker port.")
@click.option("--no-tls", is_flag=True, help="The board talks to HQ without TLS (tests only).")
@click.option("--prefix", default="storegw/v1", show_default=True, help="Topic prefix (uplink.topic_prefix).")
@HQ_DIR
@handle_errors
def hq_claim(store_id: str, store_name: str, timezone: str, hq_host: str, hq_port: int, no_tls: bool, prefix: str,
             hq_dir: str) -> None:
    """Issue a single-use claim code (valid 15 minutes) that provisions one store's board.

    Give the code to the technician; on the board, `storegw provision init --claim CODE` trades it
    with `storegw hq provisioner` for the board's certificate and the store's config.

    \b
    Example:
      storegw hq claim --store sh-001 --name "Shanghai People's Square" --hq-host hq.example.com
    """
    from gateway.hq.claims import CODE_TTL, Authority

    config = {"store": {"id": store_id, "name": store_name, "timezone": timezone},
              "uplink": {"host": hq_host, "port": hq_port, "tls": not no_tls, "topic_prefix": prefix}}
    code = Authority(Path(hq_dir)).issue(store_id, config)
    click.echo(f"claim code for store {store_id}: {code} (single use, expires in {CODE_TTL // 60} minutes)")
    click.echo(f"on the board: storegw provision init --store-id {store_id} --hq-host {hq_host} --hq-port {hq_port}"
               f"{' --no-hq-tls' if no_tls else ''} --claim {code}")


@hq.command("sign")
@click.argument("csr_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--store", "store_id", required=True, help="Store id the CSR must name (its CN).")
@click.option("--out", default="", help="Write the certificate here (default: print it).")
@HQ_DIR
@handle_errors
def hq_sign(csr_file: str, store_id: str, out: str, hq_dir: str) -> None:
    """Sign a board's CSR (hq.csr) with HQ's CA; the board imports it with `provision init --cert`.

    \b
    Example:
      storegw hq sign sh-001.csr --store sh-001 --out sh-001.crt   # and give the board DIR/ca.crt too
    """
    from gateway.hq.claims import Authority

    auth = Authority(Path(hq_dir))
    pem = auth.sign(Path(csr_file).read_text(), store_id)
    if out:
        Path(out).write_text(pem)
        click.echo(f"wrote {out}; HQ's CA is {auth.ca_cert_path}", err=True)
    else:
        click.echo(pem, nl=False)


@hq.command("provisioner")
@click.option("--host", default="127.0.0.1", show_default=True, help="HQ broker host.")
@click.option("--port", default=1883, show_default=True, type=int, help="HQ broker port.")
@click.option("--tls", is_flag=True, help="Use TLS.")
@click.option("--ca-file", default="", help="CA bundle for --tls.")
@click.option("--count", type=int, default=0, help="Exit after answering this many requests (0: until Ctrl-C).")
@HQ_DIR
@handle_errors
def hq_provisioner(host: str, port: int, tls: bool, ca_file: str, count: int, hq_dir: str) -> None:
    """Answer boards' claim requests: check the code, sign the CSR, send certificate and config.

    \b
    Example:
      storegw hq provisioner --host hq.example.com --port 8883 --tls --dir /var/lib/storegw-hq
    """
    import os

    from gateway.core.errors import GatewayError
    from gateway.hq.claims import Authority, serve
    from gateway.spine.mqtt import configure_auth, new_client

    auth = Authority(Path(hq_dir))
    auth.ca()
    client = new_client(f"storegw-hq-provisioner-{os.getpid()}", clean=True)
    configure_auth(client, tls=tls, ca_file=ca_file, section="hq")
    try:
        client.connect(host, port, keepalive=30)
    except OSError as err:
        raise GatewayError(f"cannot reach the HQ broker {host}:{port}: {err}") from err
    click.echo(f"answering claims on {host}:{port} (CA {auth.ca_cert_path})", err=True)
    try:
        serve(auth, client, count=count, log=lambda s: click.echo(s, err=True))
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
