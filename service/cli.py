"""The `lrrt` command line: the server processes (standalone, api, worker) and a client for the API.

Server commands read `LRRT_*` settings (`lrrt.settings.Settings`); client commands read `LRRT_URL`
(default http://127.0.0.1:8000) and `LRRT_API_KEY`. Errors the API answers are printed as their
title and detail, with exit code 1. Nothing here imports Keras: the worker command imports the task
module, which imports Keras only inside the pool children.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Column, Table

from lrrt.client.api import Client, LrrtError
from lrrt.client.keras_code import NoRecommendation, keras_code
from lrrt.client.progress_bar import ProgressBar
from lrrt.client.progress_bar import short_number as _num
from lrrt.problems import ProblemException
from lrrt.status import TERMINAL
from service.spec_options import SpecArgs, spec_options

app = typer.Typer(
    help="Learning Rate Range Test service: find the learning rate (and optimizer) for a Keras model.",
    no_args_is_help=True,
    add_completion=False,
    # Click's plain help, not rich's tables: at 80 columns rich cuts long flag names (`--divergence-thr…`),
    # click never does (a long name moves its help to the next line). tests/service/test_cli.py checks it.
    rich_markup_mode=None,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------------- servers
@app.command()
def standalone(
    host: str = typer.Option("127.0.0.1", help="Address the API listens on."),
    port: int = typer.Option(8000, help="Port the API listens on."),
    data_dir: Path = typer.Option(None, help="Uploads, file: datasets and the embedded Redis's data "
                                  "(default: LRRT_DATA_ROOT)."),
    backends: str = typer.Option("tensorflow,jax", help="Comma-separated backends to start a worker for; a backend "
                                 "whose package is not installed is left out (jax: pip install 'jax>=0.10')."),
) -> None:
    """Everything on one machine: an embedded Redis (unless LRRT_REDIS_URL is set), the API and a worker per backend."""
    from lrrt.routing import BACKENDS
    from lrrt.settings import Settings
    from service import standalone as runner
    from service.auth import UnsafeBind, ensure_safe_bind

    settings = Settings()
    try:
        ensure_safe_bind(host, settings)
    except UnsafeBind as exc:
        _fail(str(exc))
    asked = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = sorted(set(asked) - set(BACKENDS))
    if unknown or not asked:
        _fail(f"--backends takes {', '.join(BACKENDS)} (comma-separated), not {', '.join(unknown) or 'nothing'}")
    installed = runner.installed_backends(asked)
    for missing in sorted(set(asked) - set(installed)):
        err.print(f"[yellow]{missing} is not installed: no {missing} worker (jobs go to the others)[/yellow]", highlight=False)
    if not installed:
        _fail("none of the backends asked for is installed: pip install -e '.[worker]'")
    raise typer.Exit(runner.run(host, port, data_dir, settings, log=lambda m: err.print(m, highlight=False),
                                backends=installed))


@app.command()
def api(
    host: str = typer.Option("127.0.0.1", help="Address to listen on; non-loopback needs LRRT_API_KEYS."),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, help="Uvicorn worker processes."),
) -> None:
    """The HTTP API (no TensorFlow in this process)."""
    import uvicorn

    from lrrt.settings import get_settings
    from service.auth import UnsafeBind, ensure_safe_bind

    try:
        ensure_safe_bind(host, get_settings())
    except UnsafeBind as exc:
        _fail(str(exc))
    if workers > 1:
        uvicorn.run("service.app:create_app", factory=True, host=host, port=port, workers=workers)
    else:
        from service.app import create_app

        uvicorn.run(create_app(get_settings()), host=host, port=port)


@app.command()
def worker(
    queues: list[str] = typer.Option(None, "--queues", "-Q", help="Queues to consume (default: LRRT_QUEUE)."),
    concurrency: int = typer.Option(1, "--concurrency", "-c", help="Sweeps run at once (pool processes)."),
    hostname: str = typer.Option(None, "--hostname", "-n", help="Celery node name (default lrrt@<host>)."),
    pool: str = typer.Option("prefork", help="prefork (crash-isolated children, default) or solo."),
    loglevel: str = typer.Option("INFO", help="Celery log level."),
    backend: str = typer.Option(None, "--backend", "-b", help="Keras backend: tensorflow or jax (default: LRRT_BACKEND, "
                                "else tensorflow). The worker consumes that backend's queue."),
) -> None:
    """A Celery worker that runs sweeps on one Keras backend. One per GPU (set CUDA_VISIBLE_DEVICES)."""
    from lrrt.routing import BACKENDS
    from lrrt.settings import get_settings

    settings = get_settings()
    backend = backend or settings.backend
    if backend not in BACKENDS:
        _fail(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    from worker.bootstrap import serve  # this process becomes the worker: the API never runs this

    serve(settings, backend, queues=queues, concurrency=concurrency, hostname=hostname, pool=pool, loglevel=loglevel,
          log=lambda m: err.print(f"[yellow]{m}[/yellow]", highlight=False))


# ---------------------------------------------------------------------------------------- client
#: Exit statuses a script can tell apart (0: succeeded, or still queued/running for `status`).
EXIT_ERROR, EXIT_FAILED, EXIT_CANCELLED = 1, 3, 4
TERMINAL_EXIT = {"failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}
EXIT_HELP = ("Exit status: 0 succeeded (or still queued/running), 1 the API refused or could not be reached, "
             "3 the job failed, 4 it was cancelled.")
AS_JSON = typer.Option(False, "--json", help="Print JSON (for scripts) instead of the table.")
LABELS_HELP = "A job label KEY=VALUE (e.g. team=vision); repeat for several."

datasets_app = typer.Typer(help="Upload, list, show and delete .npz datasets (use their dataset:<id> URI).",
                           no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
weights_app = typer.Typer(help="Upload, list, show and delete Keras 3 .weights.h5 files (use their weights:<id> URI "
                          "with `lrrt submit --weights`).", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


def _client() -> Client:
    return Client()


def _call(fn, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN001
    """Run a client call; an API problem becomes a readable message and exit code 1."""
    try:
        return fn(*args, **kwargs)
    except LrrtError as exc:
        _fail(str(exc))
    except ProblemException as exc:  # a local file the client could not read (a table or image folder to upload)
        _fail(exc.detail)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _optimizer(text: str) -> dict[str, Any]:
    """`adam`, `sgd:momentum=0.9,nesterov=true` or `sgd:momentum=0.9@SGD momentum` (a label)."""
    text, _, label = text.partition("@")
    name, _, params_text = text.partition(":")
    params: dict[str, Any] = {}
    for pair in filter(None, params_text.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            _fail(f"optimizer parameter {pair!r} must look like key=value (e.g. sgd:momentum=0.9)")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    arm: dict[str, Any] = {"name": name.strip()}
    if params:
        arm["params"] = params
    if label:
        arm["label"] = label
    return arm


def _labels(pairs: list[str] | None) -> dict[str, str]:
    labels = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"label {pair!r} must look like KEY=VALUE (e.g. --labels team=vision)")
        labels[key.strip()] = value
    return labels


def _read_model(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        _fail(f"{path} is not JSON ({exc.msg} at line {exc.lineno}); save model.to_json() into it")


@app.command(epilog=EXIT_HELP)
@spec_options
def submit(
    labels: list[str] = typer.Option(None, "--labels", "--label", help=LABELS_HELP),
    idempotency_key: str = typer.Option(None, help="Resending with the same key and body returns the same job."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Show live progress, then the recommendation."),
    as_json: bool = AS_JSON,
    backend: str = typer.Option(None, help="auto (the server's default: the faster backend for this model among "
                                "those with live workers), tensorflow or jax."),
    *,
    spec: SpecArgs,
) -> None:
    """Submit a range test; prints the job id (with --wait, follows it to the end).

    Every sweep and dataset field of the JobSpec is an option below; the ones you leave out take the
    server's defaults. With --json: the job resource, or with --wait {"job": ..., "result": ...}.
    MODEL may be a .keras archive: its config.json is sent as the model and its weights are uploaded.
    """
    client = _client()
    with tempfile.TemporaryDirectory(prefix="lrrt-submit-") as scratch:
        model, start = _model_and_weights(spec.model, spec.weights, Path(scratch))
        if start is not None and not start.startswith(("weights:", "file:")):
            start = _call(client.upload_weights, Path(start))["uri"]
    job = _call(client.submit, model, spec.dataset, loss=spec.loss, sweep=spec.sweep,
                optimizers=[_optimizer(o) for o in spec.optimizers] or None, labels=_labels(labels),
                idempotency_key=idempotency_key, backend=backend, weights=start)
    if not wait:
        _print_json(job) if as_json else print(job["id"])
        return
    if not as_json:
        print(job["id"])
    _follow(client, job["id"], as_json=as_json)


def _model_and_weights(path: Path, weights: str | None, scratch: Path) -> tuple[dict[str, Any], str | None]:
    """The model and where its arms start, for `submit` and `run`: a .keras archive is split into `scratch`
    (its weights file used unless --weights names others); a local --weights file is checked to exist; a URI
    is passed on. Returns a URI, a local file's path, or None."""
    from lrrt.client.archive import split_keras_archive

    if path.suffix == ".keras":
        try:
            model, archived = split_keras_archive(path, scratch)
        except (ValueError, OSError) as exc:
            _fail(str(exc))
        weights = weights or str(archived)
    else:
        model = _read_model(path)
    if weights is None or weights.startswith(("weights:", "file:")):
        return model, weights
    if not Path(weights).is_file():
        _fail(f"--weights {weights}: no such file; give a .weights.h5 file (model.save_weights('model.weights.h5')) "
              "or a weights:<id> URI from `lrrt weights upload`")
    return model, weights


@app.command(epilog="Exit status: 0 done, 1 the spec or the engine refused it (the message says what to change).")
@spec_options
def run(
    plot: Path = typer.Option(None, help="Also save the charts to this .png or .svg file."),
    as_json: bool = AS_JSON,
    *,
    spec: SpecArgs,
) -> None:
    """Run the range test here, in this process, without the service (needs Keras: the worker extra).

    The same spec as `lrrt submit` (same options), run by the same engine; `file:` URIs are read
    under LRRT_DATA_ROOT. MODEL may be a .keras archive, and --weights a .weights.h5 file anywhere.
    From Python: `lrrt.client.local.lr_find(model, x, y, ...)`.
    """
    from pydantic import ValidationError

    from lrrt.client.local import lr_find
    from lrrt.problems import EngineError

    if (spec.weights or "").startswith("weights:"):
        _fail(f"--weights {spec.weights}: uploaded weights live on the service (use `lrrt submit`); `lrrt run` "
              "takes the .weights.h5 file itself or a file: URI under LRRT_DATA_ROOT")
    try:
        with tempfile.TemporaryDirectory(prefix="lrrt-run-") as scratch:
            model, weights = _model_and_weights(spec.model, spec.weights, Path(scratch))
            found = lr_find(model, dataset=spec.dataset, loss=spec.loss, weights=_file_or_uri(weights),
                            optimizers=[_optimizer(o) for o in spec.optimizers] or None, **spec.sweep)
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except EngineError as exc:
        _fail(str(LrrtError(exc.problem())))
    if plot is not None:
        _plot_format(plot)
        found.plot(plot)
        err.print(f"charts written to {plot}", highlight=False)
    _print_json(found.data) if as_json else _print_result(found.data, "succeeded")


def _file_or_uri(weights: str | None) -> Path | str | None:
    """`lr_find`'s `weights`: a `file:` URI as it is, a local file as a Path (it may lie anywhere)."""
    return weights if weights is None or weights.startswith("file:") else Path(weights)


@app.command(epilog=EXIT_HELP)
def status(job_id: str, as_json: bool = typer.Option(False, "--json", help="Print the job resource as JSON.")) -> None:
    """A job's status and progress; a failed job shows its error and exits 3 (cancelled: 4)."""
    job = _call(_client().status, job_id)
    if as_json:
        _print_json(job)
        raise typer.Exit(TERMINAL_EXIT.get(job["status"], 0))
    progress = job.get("progress") or {}
    out.print(f"[bold]{job['id']}[/bold]  {_styled(job['status'])}", highlight=False)
    if job.get("error"):
        out.print(f"[red]{_escape(str(LrrtError(job['error'])))}[/red]", highlight=False)
    if progress:
        out.print(f"steps {progress.get('steps_done', 0)}/{progress.get('steps_total', '?')}", highlight=False)
        for arm in progress.get("arms", []):
            out.print(f"  {_escape(arm['label'])}: {_arm_state(job['status'], arm['state'])}, {arm['steps_done']} steps, "
                      f"lr {_num(arm.get('lr'))}, loss {_num(arm.get('loss'))}", highlight=False)
    if job["status"] == "cancelled":
        out.print("The job was cancelled; `lrrt result` shows the curves it recorded, if any.", highlight=False)
    raise typer.Exit(TERMINAL_EXIT.get(job["status"], 0))


@app.command(epilog=EXIT_HELP)
def result(
    job_id: str,
    as_json: bool = typer.Option(False, "--json", help="Print the whole result (curves included) as JSON."),
    as_csv: bool = typer.Option(False, "--csv", help="Print the curves as CSV: a row per arm and step."),
    plot: Path = typer.Option(None, help="Also save the charts to this .png or .svg file."),
) -> None:
    """The curves, suggestions and recommendation of a job (partial for a cancelled or failed one)."""
    client = _client()
    res = _call(client.result, job_id)
    state = res.get("status", "succeeded")
    if plot is not None:
        plot.write_bytes(_call(client.plot, job_id, _plot_format(plot)))
        err.print(f"charts written to {plot}", highlight=False)
    if as_csv:
        sys.stdout.write(_call(client.result_csv, job_id))
    elif as_json:
        _print_json(res)
    else:
        job = _call(client.status, job_id) if state != "succeeded" else None
        _print_result(res, state, (job or {}).get("error"))
    raise typer.Exit(TERMINAL_EXIT.get(state, 0))


@app.command()
def code(
    job_id: str,
    one_cycle: bool = typer.Option(False, "--one-cycle", help="A one-cycle schedule instead of a constant LR."),
    as_json: bool = typer.Option(False, "--json", help='Print {"constant": ..., "one_cycle": ...} as JSON.'),
) -> None:
    """Copy-ready Keras code building the recommended optimizer (as on the dashboard's job page)."""
    res = _call(_client().result, job_id)
    try:
        snippets = {"constant": keras_code(res), "one_cycle": keras_code(res, one_cycle=True)}
    except NoRecommendation as exc:
        _fail(f"job {job_id}: {exc}")
    if res.get("status", "succeeded") != "succeeded":
        err.print(f"[yellow]job {job_id} {res['status']}: this comes from its partial curves[/yellow]", highlight=False)
    _print_json(snippets) if as_json else sys.stdout.write(snippets["one_cycle" if one_cycle else "constant"])


@app.command(epilog=EXIT_HELP)
def cancel(
    job_id: str,
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait until the job has stopped."),
    as_json: bool = typer.Option(False, "--json", help="Print the job resource as JSON."),
) -> None:
    """Cancel a job: a queued one never starts, a running one stops at its next checkpoint."""
    client = _client()
    job = _call(client.cancel, job_id)
    if wait and job["status"] not in TERMINAL:
        job = _call(client.wait, job_id)
    if as_json:
        _print_json(job)
        return
    if job["status"] == "cancelled":
        done = (job.get("progress") or {}).get("steps_done", 0)
        then = (f"its {done} recorded steps are kept: `lrrt result {job_id}` shows them." if done
                else "it never ran a step.")
        out.print(f"{job_id}: {_styled('cancelled')}; {then}", highlight=False)
    elif job["status"] in TERMINAL:
        out.print(f"{job_id}: {_styled(job['status'])} before the cancel took effect.", highlight=False)
    else:
        out.print(f"{job_id}: {_styled(job['status'])}, cancel requested: it stops at its next chunk and keeps its "
                  f"partial curves. `lrrt status {job_id}` shows when it is cancelled (or add --wait).", highlight=False)


@app.command()
def delete(job_id: str, as_json: bool = AS_JSON) -> None:
    """Delete a finished job and its results (a queued or running one: cancel it first)."""
    _call(_client().delete, job_id)
    _print_json({"id": job_id, "deleted": True}) if as_json else out.print(f"{job_id}: deleted", highlight=False)


@app.command()
def jobs(
    status_filter: str = typer.Option(None, "--status", help="Only jobs in this status."),
    limit: int = typer.Option(20, help="How many of the newest jobs."),
    as_json: bool = AS_JSON,
) -> None:
    """Your jobs, newest first (ids are never cut: paste them into the other commands)."""
    page = _call(_client().jobs, status=status_filter, page_size=limit)
    if as_json:
        _print_json(page)
        return
    table = Table(Column("id", no_wrap=True, min_width=32), Column("status", no_wrap=True),
                  Column("created", no_wrap=True), "progress", Column("labels", overflow="fold"))
    for job in page["items"]:
        progress = job.get("progress") or {}
        table.add_row(job["id"], _styled(job["status"]), job["created_at"][:16].replace("T", " "),
                      f"{progress.get('fraction', 0):.0%}" if progress else "",
                      _escape(", ".join(f"{k}={v}" for k, v in (job.get("labels") or {}).items())))
    out.print(table)


# ---------------------------------------------------------------------------------------- datasets
@datasets_app.command("upload")
def datasets_upload(
    path: Path = typer.Argument(..., help="An .npz with arrays x and y (optionally x_val, y_val); a .parquet or "
                                "a .csv table (with --columns); an image folder or a .zip of one (with --image-size)."),
    columns: str = typer.Option(None, help='Tables: JSON as dataset.columns, e.g. \'{"x": ["f1", "f2"], "y": "label"}\'.'),
    image_size: str = typer.Option(None, help="Image folders: HEIGHTxWIDTH the images are resized to, e.g. 32x32."),
    channels: int = typer.Option(3, help="Image folders: 1 (grey), 3 (RGB) or 4 (RGBA)."),
    as_json: bool = AS_JSON,
) -> None:
    """Upload a dataset; prints the dataset:<id> URI to pass as --dataset."""
    if path.suffix.lower() in (".parquet", ".pq", ".csv"):
        if not columns:
            _fail('a table needs --columns, e.g. --columns \'{"x": ["f1", "f2"], "y": "label"}\'')
        try:
            mapping = json.loads(columns)
        except json.JSONDecodeError as exc:
            _fail(f"--columns is not JSON: {exc.msg}")
        meta = _call(_client().upload_table, path, mapping)
    elif path.is_dir() or path.suffix.lower() == ".zip":
        height, sep, width = (image_size or "").lower().partition("x")
        if not sep or not height.isdigit() or not width.isdigit():
            _fail("an image folder needs --image-size HEIGHTxWIDTH, e.g. --image-size 32x32 (the model's input size)")
        meta = _call(_client().upload_image_folder, path, (int(height), int(width)), channels)
    else:
        if not path.is_file():
            _fail(f"{path} is not a file: save one with np.savez(path, x=x, y=y)")
        meta = _call(_client().upload_dataset, path)
    _print_json(meta) if as_json else print(meta["uri"] + (f"  classes: {', '.join(meta['classes'])}" if meta.get("classes") else ""))


@datasets_app.command("list")
def datasets_list(as_json: bool = AS_JSON) -> None:
    """Your datasets, newest first."""
    items = _call(_client().datasets)
    if as_json:
        _print_json(items)
        return
    table = Table(Column("uri", no_wrap=True), "shapes", "bytes", Column("created", no_wrap=True), "file")
    for meta in items:
        table.add_row(meta["uri"], _shapes(meta), str(meta["bytes"]), meta["created_at"][:16].replace("T", " "),
                      _escape(meta.get("filename") or ""))
    out.print(table)


@datasets_app.command("show")
def datasets_show(dataset_id: str = typer.Argument(..., help="The id, or its dataset:<id> URI."),
                  as_json: bool = AS_JSON) -> None:
    """One dataset's shapes, dtypes and size."""
    meta = _call(_client().dataset, dataset_id)
    if as_json:
        _print_json(meta)
        return
    out.print(f"[bold]{meta['uri']}[/bold]  {meta['bytes']} bytes  {meta['created_at']}", highlight=False)
    for name, shape in meta["shapes"].items():
        out.print(f"  {name}: {tuple(shape)} {meta['dtypes'].get(name, '')}", highlight=False)


@datasets_app.command("delete")
def datasets_delete(dataset_id: str = typer.Argument(..., help="The id, or its dataset:<id> URI."),
                    as_json: bool = AS_JSON) -> None:
    """Delete an uploaded dataset."""
    _call(_client().delete_dataset, dataset_id)
    _print_json({"id": dataset_id, "deleted": True}) if as_json else out.print(f"{dataset_id}: deleted", highlight=False)


# ---------------------------------------------------------------------------------------- weights
@weights_app.command("upload")
def weights_upload(
    path: Path = typer.Argument(..., help="A Keras 3 .weights.h5 (model.save_weights('model.weights.h5'))."),
    as_json: bool = AS_JSON,
) -> None:
    """Upload a .weights.h5; prints the weights:<id> URI to pass as --weights."""
    if not path.is_file():
        _fail(f"{path} is not a file: save one with model.save_weights('model.weights.h5')")
    meta = _call(_client().upload_weights, path)
    _print_json(meta) if as_json else print(meta["uri"])


@weights_app.command("list")
def weights_list(as_json: bool = AS_JSON,
                 limit: int = typer.Option(50, min=1, max=100, help="How many, newest first.")) -> None:
    """Your uploaded weights, newest first."""
    items = _call(_client().list_weights, page_size=limit)["items"]
    if as_json:
        _print_json(items)
        return
    table = Table(Column("uri", no_wrap=True), "variables", "bytes", "sha256", Column("created", no_wrap=True), "file")
    for meta in items:
        table.add_row(meta["uri"], str(len(meta["variables"])), str(meta["bytes"]), meta["sha256"][:12],
                      meta["created_at"][:16].replace("T", " "), _escape(meta.get("filename") or ""))
    out.print(table)


@weights_app.command("show")
def weights_show(weights_id: str = typer.Argument(..., help="The id, or its weights:<id> URI."),
                 as_json: bool = AS_JSON) -> None:
    """One upload's variables, size and SHA-256."""
    meta = _call(_client().get_weights, weights_id)
    if as_json:
        _print_json(meta)
        return
    out.print(f"[bold]{meta['uri']}[/bold]  {meta['bytes']} bytes  sha256 {meta['sha256']}  {meta['created_at']}",
              highlight=False)
    for name, shape in meta["variables"].items():
        out.print(f"  {_escape(name)}: {tuple(shape)}", highlight=False)


@weights_app.command("delete")
def weights_delete(weights_id: str = typer.Argument(..., help="The id, or its weights:<id> URI."),
                   as_json: bool = AS_JSON) -> None:
    """Delete uploaded weights."""
    _call(_client().delete_weights, weights_id)
    _print_json({"id": weights_id, "deleted": True}) if as_json else out.print(f"{weights_id}: deleted", highlight=False)


# ---------------------------------------------------------------------------------------- output
def _follow(client: Client, job_id: str, *, as_json: bool = False) -> None:
    """A live progress bar until the job ends; then the result (failed or cancelled: said first, exit 3/4)."""
    with ProgressBar(err) as show:
        job = _call(client.wait, job_id, on_update=show)
    try:
        res = client.result(job_id)
    except LrrtError:
        res = None  # no step ran
    if as_json:
        _print_json({"job": job, "result": res})
    elif res is not None:
        _print_result(res, job["status"], job.get("error"))
    else:
        _print_terminal(job["status"], job.get("error"), job_id)
    raise typer.Exit(TERMINAL_EXIT.get(job["status"], 0))


def _print_terminal(state: str, error: dict[str, Any] | None, job_id: str | None = None) -> None:
    """The first lines for a job that did not succeed: what happened, before anything else."""
    what = f"Job {job_id} {state.upper()}" if job_id else f"JOB {state.upper()}"
    out.print(f"[bold red]{what}[/bold red]" + (f": {_escape(str(LrrtError(error)))}" if error else ""),
              highlight=False)


def _print_result(res: dict[str, Any], state: str, error: dict[str, Any] | None = None) -> None:
    partial = state != "succeeded" or bool(res.get("stopped"))
    if state != "succeeded":
        _print_terminal(state, error, res.get("id"))
        out.print("The curves below are PARTIAL: only the steps that ran before it stopped.", highlight=False)
    table = Table("arm", "recommended LR", "rule", "min loss", "at LR", "stop reason",
                  title="Learning rate range test" + (" (partial)" if partial else ""))
    for arm in res.get("arms", []):
        table.add_row(_escape(arm["label"]), _num(arm.get("recommended_lr")), str(arm.get("recommended_rule") or "-"),
                      _num(arm.get("min_loss")), _num(arm.get("min_loss_lr")), str(arm.get("stop_reason") or "-"))
    out.print(table)
    _print_confirm(res.get("arms", []))
    rec = res.get("recommendation")
    if rec and rec.get("learning_rate") is not None:
        head = "Partial recommendation (from the steps that ran; rerun to the end before trusting it)" if partial \
            else "Verified recommendation" if rec.get("verified") else "Recommendation"
        line = f"{head}: [bold]{_escape(rec.get('optimizer'))}[/bold] at learning rate [bold]{_num(rec.get('learning_rate'))}[/bold]"
        one_cycle = rec.get("one_cycle")
        if one_cycle:
            line += f" (one-cycle: max_lr {_num(one_cycle.get('max_lr'))}, base_lr {_num(one_cycle.get('base_lr'))})"
        out.print(line, highlight=False)
        if rec.get("verified"):
            out.print(f"  chosen by {_escape(rec.get('criterion'))}", highlight=False)
    else:
        reason = res.get("recommendation_reason") or "no arm produced a usable curve"
        out.print(f"No recommendation: {reason} (see `lrrt result --json` for each arm's diagnostics).",
                  highlight=False, markup=False)
    if res.get("stopped") and state == "succeeded":
        out.print(f"(partial result: the sweep was {res['stopped']})", highlight=False)
    for note in res.get("notes") or []:  # a compiled model's: whether its optimizer and loss ran, what was ignored
        out.print(f"Note: {note.get('message')}", highlight=False, markup=False)


def _print_confirm(arms: list[dict[str, Any]]) -> None:
    """The confirm phase's candidates (`sweep.confirm`): each constant LR's held-out loss, winners starred."""
    rows = [(arm["label"], c) for arm in arms for c in arm.get("confirm") or []]
    if not rows:
        return
    table = Table("arm", "round", "candidate LR", "held-out loss", "steps", "stop reason", "",
                  title="Confirm: trained candidates")
    for label, c in rows:
        table.add_row(_escape(label), "-" if c.get("round") is None else str(c["round"] + 1), _num(c.get("lr")),
                      _num(c.get("val_loss")), str(c.get("steps")), str(c.get("stop_reason") or "-"),
                      "*" if c.get("winner") else "")
    out.print(table)
    for arm in arms:  # whether worse candidates enclose each arm's winner, or what to change
        bracket = arm.get("confirm_bracket")
        if bracket and not bracket["enclosed"]:
            out.print(f"{arm['label']}: winner at the {bracket['edge']} edge: {bracket['advice']}",
                      highlight=False, markup=False)


def _arm_state(job_status: str, arm_state: str) -> str:
    """An arm of a finished job is never shown as running: it was interrupted (or never started)."""
    if job_status in TERMINAL and arm_state in ("running", "pending"):
        return f"{'interrupted' if arm_state == 'running' else 'not run'} (job {job_status})"
    return arm_state


def _plot_format(path: Path) -> str:
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("png", "svg"):
        _fail(f"--plot must end in .png or .svg, not {path.name!r}")
    return fmt


def _shapes(meta: dict[str, Any]) -> str:
    return ", ".join(f"{name} {tuple(shape)}" for name, shape in meta.get("shapes", {}).items())


def _escape(text: Any) -> str:
    """User text (labels, errors) printed through rich: brackets are not markup."""
    return rich_escape(str(text))


def _styled(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}.get(status, "white")
    return f"[{colour}]{status}[/{colour}]"


if __name__ == "__main__":  # `python -m service.cli`, as the standalone supervisor starts the parts
    sys.exit(app())
