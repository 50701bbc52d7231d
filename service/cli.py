"""The `lrrt` command line: the server processes (standalone, api, worker) and a client for the API.

Server commands read `LRRT_*` settings (`worker.core.settings.Settings`); client commands read `LRRT_URL`
(default http://127.0.0.1:8000) and `LRRT_API_KEY`. Errors the API answers are printed as their
title and detail, with exit code 1. Nothing here imports Keras: the worker command imports the task
module, which imports Keras only inside the pool children.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.client import Client, LrrtError

app = typer.Typer(
    help="Learning Rate Range Test service: find the learning rate (and optimizer) for a Keras model.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
#: Pause before `lrrt worker` starts Celery again after it stopped on an unrecoverable error.
WORKER_RESTART_S = 2.0


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
) -> None:
    """Everything on one machine: an embedded Redis (unless LRRT_REDIS_URL is set), the API and one worker."""
    from service import standalone as runner
    from service.auth import UnsafeBind, ensure_safe_bind
    from worker.core.settings import Settings

    settings = Settings()
    try:
        ensure_safe_bind(host, settings)
    except UnsafeBind as exc:
        _fail(str(exc))
    raise typer.Exit(runner.run(host, port, data_dir, settings, log=lambda m: err.print(m, highlight=False)))


@app.command()
def api(
    host: str = typer.Option("127.0.0.1", help="Address to listen on; non-loopback needs LRRT_API_KEYS."),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, help="Uvicorn worker processes."),
) -> None:
    """The HTTP API (no TensorFlow in this process)."""
    import uvicorn

    from service.auth import UnsafeBind, ensure_safe_bind
    from worker.core.settings import get_settings

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
) -> None:
    """A Celery worker that runs sweeps. One per GPU (set CUDA_VISIBLE_DEVICES)."""
    from celery.worker import state as worker_state

    from worker.core.settings import get_settings
    from worker.tasks import app as celery_app

    argv = [
        "worker",
        "--queues", ",".join(queues or [get_settings().queue]),
        "--concurrency", str(concurrency),
        "--hostname", hostname or f"lrrt@{socket.gethostname()}",
        "--pool", pool,
        "--loglevel", loglevel,
        "--without-gossip", "--without-mingle",  # no chatter between workers: nothing here uses it
    ]
    # Celery ends `worker_main` on an "Unrecoverable error" as if asked to stop (status 0), and kombu 5.7.0
    # raises one when a reconnect after a Redis restart races its restore of unacked messages. Unless a
    # shutdown signal set Celery's stop flags, start it again: a Redis blip must not leave this host
    # without a worker.
    while True:
        try:
            celery_app.worker_main(argv)
        except SystemExit as exc:
            if exc.code not in (None, 0, 1):
                raise
        if worker_state.should_stop is not None or worker_state.should_terminate is not None:
            return
        err.print(f"[yellow]the Celery worker stopped on an unrecoverable error; starting it again in "
                  f"{WORKER_RESTART_S:.0f} s[/yellow]", highlight=False)
        time.sleep(WORKER_RESTART_S)


# ---------------------------------------------------------------------------------------- client
def _client() -> Client:
    return Client()


def _call(fn, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN001
    """Run a client call; an API problem becomes a readable message and exit code 1."""
    try:
        return fn(*args, **kwargs)
    except LrrtError as exc:
        _fail(str(exc))


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


@app.command()
def submit(
    model: Path = typer.Argument(..., help="A JSON file with the model's model.to_json() output."),
    dataset: str = typer.Option(..., help="builtin:digits, keras:mnist, dataset:<id> or file:<path>."),
    normalize: bool = typer.Option(False, "--normalize", help="Scale the dataset's inputs to [0, 1]."),
    optimizer: list[str] = typer.Option(
        None, "--optimizer", "-o", help="An arm: NAME[:key=value,...][@label]; repeat for several (default adam)."
    ),
    loss: str = typer.Option(None, help="Keras loss identifier (server default sparse_categorical_crossentropy)."),
    start_lr: float = typer.Option(None, help="Learning rate of the first step."),
    end_lr: float = typer.Option(None, help="Learning rate of the last step."),
    steps: int = typer.Option(None, help="Sweep length in steps per arm."),
    batch_size: int = typer.Option(None, help="Batch size."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Show live progress, then the recommendation."),
) -> None:
    """Submit a range test; prints the job id (with --wait, follows it to the end)."""
    try:
        model_obj = json.loads(model.read_text())
    except OSError as exc:
        _fail(f"cannot read {model}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        _fail(f"{model} is not JSON ({exc.msg} at line {exc.lineno}); save model.to_json() into it")
    sweep = {k: v for k, v in {"start_lr": start_lr, "end_lr": end_lr, "num_steps": steps,
                               "batch_size": batch_size}.items() if v is not None}
    client = _client()
    dataset_ref = {"uri": dataset, "normalize": True} if normalize else dataset
    job = _call(client.submit, model_obj, dataset_ref, loss=loss, sweep=sweep,
                optimizers=[_optimizer(o) for o in optimizer] if optimizer else None)
    print(job["id"])
    if wait:
        _follow(client, job["id"])


@app.command()
def status(job_id: str, as_json: bool = typer.Option(False, "--json", help="Print the job resource as JSON.")) -> None:
    """A job's status and progress."""
    job = _call(_client().status, job_id)
    if as_json:
        print(json.dumps(job, indent=2))
        return
    progress = job.get("progress") or {}
    out.print(f"[bold]{job['id']}[/bold]  {_styled(job['status'])}", highlight=False)
    if progress:
        out.print(f"steps {progress.get('steps_done', 0)}/{progress.get('steps_total', '?')}", highlight=False)
        for arm in progress.get("arms", []):
            out.print(f"  {arm['label']}: {arm['state']}, {arm['steps_done']} steps, "
                      f"lr {_num(arm.get('lr'))}, loss {_num(arm.get('loss'))}", highlight=False)
    if job.get("error"):
        err.print(LrrtError(job["error"]), highlight=False, markup=False)


@app.command()
def result(
    job_id: str,
    as_json: bool = typer.Option(False, "--json", help="Print the whole result (curves included) as JSON."),
    plot: Path = typer.Option(None, help="Also save the charts to this .png or .svg file."),
) -> None:
    """The curves, suggestions and recommendation of a job (partial for a cancelled or failed one)."""
    client = _client()
    res = _call(client.result, job_id)
    if plot is not None:
        fmt = plot.suffix.lstrip(".").lower()
        if fmt not in ("png", "svg"):
            _fail(f"--plot must end in .png or .svg, not {plot.name!r}")
        plot.write_bytes(_call(client.plot, job_id, fmt))
        err.print(f"charts written to {plot}", highlight=False)
    if as_json:
        print(json.dumps(res, indent=2))
    else:
        _print_result(res)


@app.command()
def cancel(job_id: str) -> None:
    """Cancel a job: a queued one never starts, a running one stops at its next checkpoint."""
    job = _call(_client().cancel, job_id)
    out.print(f"{job_id}: {_styled(job.get('status', 'cancelling'))}", highlight=False)


@app.command()
def jobs(
    status_filter: str = typer.Option(None, "--status", help="Only jobs in this status."),
    limit: int = typer.Option(20, help="How many of the newest jobs."),
) -> None:
    """Your jobs, newest first."""
    page = _call(_client().jobs, status=status_filter, page_size=limit)
    table = Table("id", "status", "created", "progress", "labels")
    for job in page["items"]:
        progress = job.get("progress") or {}
        table.add_row(job["id"], _styled(job["status"]), job["created_at"],
                      f"{progress.get('fraction', 0):.0%}" if progress else "",
                      ", ".join(f"{k}={v}" for k, v in (job.get("labels") or {}).items()))
    out.print(table)


# ---------------------------------------------------------------------------------------- output
def _follow(client: Client, job_id: str) -> None:
    """A live progress bar until the job ends; then the result table (or the error, exit 1)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("queued", total=None, detail="")

        def update(job: dict[str, Any]) -> None:
            progress = job.get("progress") or {}
            arms = progress.get("arms") or []
            running = next((a for a in arms if a.get("state") == "running"), None)
            detail = f"{running['label']}: lr {_num(running.get('lr'))} loss {_num(running.get('loss'))}" if running else ""
            total = progress.get("steps_total") or None
            done = total if job["status"] == "succeeded" else progress.get("steps_done", 0)  # arms may stop early
            bar.update(task, description=job["status"], total=total, completed=done, detail=detail)

        job = _call(client.wait, job_id, on_update=update)
    if job["status"] != "succeeded":
        if job.get("error"):
            err.print(str(LrrtError(job["error"])), highlight=False, markup=False)
        try:
            _print_result(client.result(job_id))  # partial curves, when any step ran
        except LrrtError:
            pass
        _fail(f"job {job_id} {job['status']}")
    _print_result(client.result(job_id))


def _print_result(res: dict[str, Any]) -> None:
    table = Table("arm", "recommended LR", "rule", "min loss", "at LR", "stop reason", title="Learning rate range test")
    for arm in res.get("arms", []):
        table.add_row(arm["label"], _num(arm.get("recommended_lr")), str(arm.get("recommended_rule") or "-"),
                      _num(arm.get("min_loss")), _num(arm.get("min_loss_lr")), str(arm.get("stop_reason") or "-"))
    out.print(table)
    rec = res.get("recommendation")
    if rec:
        line = f"Recommendation: [bold]{rec.get('optimizer')}[/bold] at learning rate [bold]{_num(rec.get('learning_rate'))}[/bold]"
        one_cycle = rec.get("one_cycle")
        if one_cycle:
            line += f" (one-cycle: max_lr {_num(one_cycle.get('max_lr'))}, base_lr {_num(one_cycle.get('base_lr'))})"
        out.print(line, highlight=False)
    elif res.get("arms"):
        out.print(f"No recommendation: {res.get('recommendation_reason') or 'no arm produced a usable curve'}",
                  highlight=False, markup=False)
    if res.get("stopped"):
        out.print(f"(partial result: the job was {res['stopped']})", highlight=False)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, (int, float)) else str(value)


def _styled(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}.get(status, "white")
    return f"[{colour}]{status}[/{colour}]"


if __name__ == "__main__":  # `python -m service.cli`, as the standalone supervisor starts the parts
    sys.exit(app())
