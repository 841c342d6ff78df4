"""The ``atlas-viewer`` command: serve, demo, prepare, verify, download and bench."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log debug messages")
def main(verbose: bool) -> None:
    """Viewer for the Allen Brain Cell Atlas basal ganglia and mouse taxonomies."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@click.argument("store_dir", required=False, type=click.Path(path_type=Path))
@click.option("--host", default=None, help="address to listen on (default 127.0.0.1)")
@click.option("--port", default=None, type=int, help="port (default 8050)")
@click.option("--debug", is_flag=True, help="Dash debug mode (Flask's development server, reloading on edits)")
def serve(store_dir: Path | None, host: str | None, port: int | None, debug: bool) -> None:
    """Serve the viewer on STORE_DIR (default: ATLAS_VIEWER_STORE or .demo/store) with gunicorn, one worker (a
    lab server with several: the Procfile's `gunicorn app:server -c gunicorn.conf.py`)."""
    from settings import Settings
    import app as app_module

    settings = Settings.from_env(store=store_dir, host=host, port=port, debug=debug or None,
                                 served_by=None if debug else "gunicorn", workers=None if debug else 1)
    if not Path(settings.store).exists():
        raise click.ClickException(
            f"store {settings.store} does not exist: run `atlas-viewer demo CACHE` and "
            f"`atlas-viewer prepare CACHE {settings.store}` first"
        )
    dash_app = app_module.create_app(settings)
    from server.features import warm_up_compiled_code

    warm_up_compiled_code()  # compile the rendering code now, not during the first user's first picture
    click.echo(f"Serving {settings.store} on http://{settings.host}:{settings.port}")
    if settings.debug:
        dash_app.run(host=settings.host, port=settings.port, debug=True)
    else:
        from server.production import serve_with_gunicorn

        serve_with_gunicorn(dash_app.server, settings)


@main.command()
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, help="random seed; same seed, same bytes")
@click.option("--scale", type=click.Choice(["demo", "atlas"]), default="demo", show_default=True,
              help="demo: small; atlas: real size (4 M-cell WMB UMAP, 7.65 M-cell consensus mouse, 1 M-cell BG species)")
@click.option("--consensus-cells", type=int, default=None,
              help="cells of the consensus mouse taxonomy (default: the scale's; atlas: the release's 7.65 M)")
def demo(cache_dir: Path, seed: int, scale: str, consensus_cells: int | None) -> None:
    """Write a synthetic ABC cache (exact ABC layout) into CACHE_DIR."""
    from data_layer.demo import get_scale, write_demo_cache
    from data_layer.demo.scale import with_consensus_cells

    sizes = get_scale(scale) if consensus_cells is None else with_consensus_cells(get_scale(scale), consensus_cells)
    write_demo_cache(cache_dir, seed=seed, scale=sizes, progress=True)


def _parse_size(text: str) -> int:
    """'4GB' -> bytes (K/M/G/T with or without B; plain numbers are bytes)."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1] if t and t[-1] in units else ""
    number = t[: len(t) - len(unit)] if unit else t
    try:
        return int(float(number) * units[unit])
    except ValueError:
        raise click.BadParameter(f"not a size: {text!r} (e.g. 4GB, 512MB)") from None


@main.command()
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.argument("store_dir", type=click.Path(path_type=Path))
@click.option("--release", default=None, help="release version (default: newest manifest in the cache)")
@click.option("--datasets", "datasets", multiple=True, help="prepare only these datasets (repeatable)")
@click.option("--memory-limit", default="4GB", show_default=True,
              help="peak memory of the expression conversion, its worker processes included")
@click.option("--workers", default=None, type=int,
              help="processes converting expression (default: every core this process may use)")
@click.option("--temp-limit", default=None,
              help="bound on the expression conversion's temporary files, e.g. 20GB (default: none; they take "
                   "a little less than the store's expression); a lower bound converts in passes over the sources")
@click.option("--scheduler", default=None,
              help="dask.distributed scheduler address (tcp://host:port): convert expression on its workers, "
                   "which must see the cache and the store at the same paths (needs the dask extra)")
def prepare(cache_dir: Path, store_dir: Path, release: str | None, datasets: tuple[str, ...], memory_limit: str,
            workers: int | None, temp_limit: str | None, scheduler: str | None) -> None:
    """Prepare the ABC cache CACHE_DIR into the fast store STORE_DIR (atomic, incremental; a prepare that was
    killed resumes the finished part of its expression conversion)."""
    from data_layer.prepare import PrepareError, prepare_store

    try:
        prepare_store(
            cache_dir,
            store_dir,
            release=release,
            datasets=list(datasets) or None,
            memory_limit_bytes=_parse_size(memory_limit),
            progress=True,
            workers=workers,
            temp_limit_bytes=_parse_size(temp_limit) if temp_limit else None,
            scheduler=scheduler,
        )
    except PrepareError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("store_dir", type=click.Path(path_type=Path))
@click.option("--sizes-only", is_flag=True, help="check file sizes only (what every open does), not checksums")
def verify(store_dir: Path, sizes_only: bool) -> None:
    """Check every file of the store STORE_DIR against its catalog (sizes and checksums); exit 1 naming the damaged
    datasets and files."""
    from data_layer.store import StoreError, verify_store

    try:
        results = verify_store(store_dir, checksums=not sizes_only)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    damaged = unverified = 0
    for kind, name, problems in results:
        if problems is None:
            unverified += 1
            click.echo(f"{kind} {name}: unverified (prepared before file sizes and checksums were recorded; its "
                       f"folder is present)")
        elif problems:
            damaged += 1
            click.echo(f"{kind} {name}: DAMAGED")
            for line in problems:
                click.echo(f"  {line}")
        else:
            click.echo(f"{kind} {name}: ok")
    what = "sizes" if sizes_only else "sizes and checksums"
    if damaged:
        click.echo(f"{damaged} of {len(results)} damaged ({what} checked); run `atlas-viewer prepare` again to "
                   f"rebuild them", err=True)
        sys.exit(1)
    click.echo(f"{len(results) - unverified} of {len(results)} ok ({what} checked)"
               + (f", {unverified} unverified" if unverified else ""))


@main.command()
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--release", default="latest", show_default=True, help="release version or 'latest'")
@click.option("--dataset", "datasets", multiple=True, help="dataset to fetch (repeatable; default all)")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["metadata", "expression_matrices", "image_volumes"]),
              help="kind of files to fetch (repeatable; default metadata and image_volumes)")
@click.option("--base-url", default=None, help="bucket https address (default: the public ABC bucket)")
@click.option("--list", "list_only", is_flag=True, help="print the release's datasets, kinds, file counts and sizes")
def download(cache_dir: Path, release: str, datasets: tuple[str, ...], kinds: tuple[str, ...],
             base_url: str | None, list_only: bool) -> None:
    """Download ABC release files into CACHE_DIR (manifest driven, resumable, MD5-verified)."""
    from data_layer.download import DownloadError, run_download

    try:
        run_download(cache_dir, release=release, datasets=list(datasets) or None, kinds=list(kinds) or None,
                     base_url=base_url, list_only=list_only, progress=True, echo=click.echo)
    except DownloadError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--scale", type=click.Choice(["demo", "atlas", "width"]), default="demo", show_default=True,
              help="width: the expression conversion at the real width (32,285 genes; bench/width_bench.py)")
@click.option("--work-dir", type=click.Path(path_type=Path), default=None, help="where caches and stores are built")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="also write results as JSON")
@click.option("--width-cells", default=40_000, show_default=True, help="--scale width: cells of the source")
@click.option("--memory-limit", default="2GB", show_default=True, help="--scale width: --memory-limit of the conversion")
@click.option("--consensus-cells", type=int, default=None,
              help="cells of the consensus mouse taxonomy (default: the scale's; atlas: the release's 7.65 M)")
def bench(scale: str, work_dir: Path | None, json_path: Path | None, width_cells: int, memory_limit: str,
          consensus_cells: int | None) -> None:
    """Measure speed and memory against the plain ways, in one run; print one table."""
    if scale == "width":
        import json

        from bench.width_bench import format_rows, run

        res = run(work_dir or Path(".bench/width"), width_cells, 2_800, 4, _parse_size(memory_limit), None)
        click.echo(format_rows(res))
        if json_path:
            json_path.write_text(json.dumps(res, indent=1, default=float))
        return
    from bench.run import run_bench

    run_bench(scale=scale, work_dir=work_dir, json_path=json_path, echo=click.echo, consensus_cells=consensus_cells)



@main.command("hash-password")
@click.argument("user")
@click.password_option(help="the password (asked twice, hidden, when not given)")
def hash_password(user: str, password: str) -> None:
    """Print a 'USER:hash' line for the users file (ATLAS_VIEWER_AUTH_USERS_FILE)."""
    from server.auth import AuthConfigError, user_line

    try:
        click.echo(user_line(user, password))
    except AuthConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("load-test")
@click.option("--users", default=20, show_default=True, help="concurrent simulated users")
@click.option("--duration", default=60.0, show_default=True, help="seconds of load (the run also stops at --max-requests)")
@click.option("--workers", default=2, show_default=True, help="gunicorn workers")
@click.option("--think", default=1.0, show_default=True, help="mean seconds a user looks between actions (0: none)")
@click.option("--store", type=click.Path(path_type=Path), default=None, help="prepared store (default: build the demo)")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="also write results as JSON")
@click.option("--compare", is_flag=True, help="no faults: the load with the limits off ('before'), then at defaults")
def load_test(users: int, duration: float, workers: int, think: float, store: Path | None,
              json_path: Path | None, compare: bool) -> None:
    """Load and fault test of a real gunicorn on loopback: latency, memory per worker, a killed worker, Redis lost;
    with --compare, the figures with the limits off and at their defaults in one run."""
    from bench.load_test import main as load_main

    args = ["--users", str(users), "--duration", str(duration), "--workers", str(workers), "--think", str(think)]
    args += ["--compare"] if compare else []
    args += ["--store", str(store)] if store else []
    args += ["--json", str(json_path)] if json_path else []
    sys.exit(load_main(args))

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
