"""Command-line options generated from the JobSpec schema: every sweep and dataset field is a flag.

`lrrt submit` and `lrrt run` take `@spec_options`: the decorated command gains the model argument,
`--dataset`, `-o/--optimizer`, `--loss` and `--weights`, and one option per field
of `lrrt.spec.Sweep` and `lrrt.spec.DatasetRef` (except `uri`, which is `--dataset`), named after
the field (`num_steps` -> `--num-steps`), typed from its annotation and helped by its description
and default. A field added to the schema is a flag the next time the CLI starts: nothing here names
the fields one by one, so none can be forgotten. Values the user did not give are left out of the
body, so the server's defaults apply.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lrrt.spec import DatasetRef, Sweep

#: Spellings the CLI contract names (docs/api.md, "Command line": `lrrt submit ... --steps N`) beside the
#: field-named flag every spec option gets.
ALIASES = {("sweep", "num_steps"): ["--steps"]}
#: Fields that are not generated options: `uri` is `--dataset` (in COMMON).
NOT_OPTIONS = {("dataset", "uri")}
OPTIMIZER_HELP = ("An arm: NAME[:key=value,...][@label], e.g. 'sgd:momentum=0.9,nesterov=true@SGD momentum' "
                  "(the label after @ names the arm in tables and charts). Repeat for several arms (default: a compiled "
                  "model's own optimizer, else adam).")


#: What `none` on the command line parses to: distinct from an option left out (None), so it is sent.
EXPLICIT_NONE = object()


def number_or_none(kind: type) -> Callable[[str], Any]:
    """A parser for a number or `none`, for a field whose null means something
    (`divergence_threshold none`: no early stop)."""

    def parse(text: str) -> Any:
        if str(text).strip().lower() in ("none", "null"):
            return EXPLICIT_NONE
        try:
            return kind(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a {kind.__name__} (or 'none')") from None

    return parse


def json_value(text: str) -> Any:
    """Any other field type: a JSON value (`true`, `3`, `{"candidates": 5}`), or else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@dataclass(frozen=True)
class SpecOption:
    """One generated option: where its value goes in the body, and the typer parameter that reads it."""

    section: Literal["sweep", "dataset"]
    field: str
    parameter: inspect.Parameter


def spec_option_list() -> list[SpecOption]:
    """Every sweep and dataset field as an option, in schema order."""
    sections: list[tuple[Literal["sweep", "dataset"], type[BaseModel]]] = [("sweep", Sweep), ("dataset", DatasetRef)]
    return [
        _option(section, name, info)
        for section, model in sections
        for name, info in model.model_fields.items()
        if (section, name) not in NOT_OPTIONS
    ]


@dataclass(frozen=True)
class SpecArgs:
    """What a `@spec_options` command receives as `spec`: the job spec's inputs as typed, unparsed
    (`optimizers` as `-o` texts, `model` as the file's path), and only the fields the user set."""

    model: Path
    dataset: dict[str, Any]
    optimizers: list[str]
    loss: str | None
    sweep: dict[str, Any]
    #: `--weights` as typed: a local `.weights.h5` path or a `weights:` / `file:` URI (None: the model's own,
    #: a `.keras` archive's, or a fresh initialisation).
    weights: str | None


#: The spec inputs every `@spec_options` command shares, ahead of the generated options.
COMMON = [
    inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Path,
                      default=typer.Argument(..., help="A JSON file with the model's model.to_json() output (compiled or not).")),
    inspect.Parameter("dataset", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                      default=typer.Option(..., "--dataset",
                                           help="builtin:digits, keras:mnist, dataset:<id> or file:<path>.")),
    inspect.Parameter("optimizer", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=list[str] | None,
                      default=typer.Option(None, "--optimizer", "-o", help=OPTIMIZER_HELP)),
    inspect.Parameter("loss", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str | None,
                      default=typer.Option(None, help="Keras loss identifier (default: a compiled model's own loss, else "
                                                     "sparse_categorical_crossentropy).")),
    inspect.Parameter("weights", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str | None,
                      default=typer.Option(None, "--weights", help=(
                          "Start every arm from these weights (fine-tuning): a Keras 3 .weights.h5 file (`submit` "
                          "uploads it first), a file:<path>.weights.h5 URI under the data root, or (`submit` only) "
                          "a weights:<id> URI. A MODEL.keras archive brings its own, unless this is given."))),
]


def spec_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` the model argument, `--dataset`, `-o`, `--loss` and the generated options; it
    receives them all as one `spec: SpecArgs`."""
    options = spec_option_list()
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "spec"]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        parts: dict[str, dict[str, Any]] = {"sweep": {}, "dataset": {}}
        for option in options:
            value = kwargs.pop(option.parameter.name)
            if value is not None:  # not typed: left to the server's default
                parts[option.section][option.field] = None if value is EXPLICIT_NONE else value
        spec = SpecArgs(model=kwargs.pop("model"), dataset={"uri": kwargs.pop("dataset"), **parts["dataset"]},
                        optimizers=kwargs.pop("optimizer") or [], loss=kwargs.pop("loss"), sweep=parts["sweep"],
                        weights=kwargs.pop("weights"))
        return command(**kwargs, spec=spec)

    params = COMMON + own + [o.parameter for o in options]
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer must read the generated signature, not the command's own
    return wrapper


def _option(section: Literal["sweep", "dataset"], name: str, info: FieldInfo) -> SpecOption:
    annotation = _unwrap_optional(info.annotation)
    # None means something (divergence_threshold: no early stop) only where the default is not None.
    meaningful_none = annotation is not info.annotation and info.default is not None
    flag = "--" + name.replace("_", "-")
    names = [flag, *ALIASES.get((section, name), [])]
    default = "server default" if info.default is None else f"default {json.dumps(info.default)}"
    help_text = f"{info.description or name.replace('_', ' ').capitalize()} ({section}.{name}; {default})"
    kwargs: dict[str, Any] = {"help": help_text, "show_default": False}
    if annotation is bool:
        names = [f"{flag}/--no-{flag[2:]}"]
        py_type: Any = bool | None
    elif typing.get_origin(annotation) is Literal or (annotation in (int, float) and not meaningful_none):
        py_type = annotation | None
    elif annotation in (int, float):
        kwargs.update(parser=number_or_none(annotation), metavar=f"{annotation.__name__.upper()}|none")
        kwargs["help"] += "; 'none' turns it off"
        py_type = str | None
    else:
        kwargs.update(parser=json_value, metavar="JSON")
        kwargs["help"] += " (a JSON value)"
        py_type = str | None
    parameter = inspect.Parameter(f"{section}__{name}", inspect.Parameter.KEYWORD_ONLY,
                                  default=typer.Option(None, *names, **kwargs), annotation=py_type)
    return SpecOption(section, name, parameter)


def _unwrap_optional(annotation: Any) -> Any:
    """`float | None` -> float; `int` -> int; a union of several types stays as it is (a JSON option)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation

