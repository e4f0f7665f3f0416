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
