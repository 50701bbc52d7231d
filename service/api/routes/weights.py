"""`/v1/weights`: upload a Keras 3 `.weights.h5` once, then start range tests from it as `weights:<id>`.

Uploads are inspected before anything is kept (`lrrt.vetting.weights.inspect_weights`: groups and
numeric datasets only, no links out of the file, no shape the file cannot hold); a rejected file
leaves nothing on disk or in Redis. Weights are tenant-scoped exactly like datasets: another
tenant's id is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Path, Query, Request, Response, UploadFile

from lrrt.problems import WeightsError
from lrrt.vetting.weights import SAVE_ADVICE, inspect_weights, sha256_file
from service.api.deps import SettingsDep, TenantDep, WeightsDep
from service.api.schemas import Weights, WeightsPage
from service.problems import ProblemError, problem_responses
from service.uploads import stage_upload

router = APIRouter(prefix="/v1/weights", tags=["weights"], responses=problem_responses(
    {401: "No or wrong API key.", 422: "A parameter is invalid; `errors` says which."}))

NOT_FOUND = problem_responses({404: "No such weights for this tenant (another tenant's answers the same)."})


def owned_weights(
    weights_id: Annotated[str, Path(description="The id POST /v1/weights returned.")],
    tenant: TenantDep,
    weights: WeightsDep,
) -> dict[str, Any]:
    meta = weights.get(weights_id, tenant)
    if meta is None:
        raise ProblemError(404, "weights-not-found",
                           f"No weights {weights_id!r} here: check the id (GET /v1/weights lists yours).")
    return meta


OwnedWeights = Annotated[dict[str, Any], Depends(owned_weights)]


@router.post(
    "",
    status_code=201,
    response_model=Weights,
    response_description="Stored; use its `uri` as the job's `weights`. `Location` names it.",
    summary="Upload weights (.weights.h5)",
    description="Multipart field `file`: what Keras 3's `model.save_weights('model.weights.h5')` writes. "
    "Only groups and numeric datasets are accepted: links to other files, virtual or externally stored "
    "datasets, strings or objects, shapes larger than the file and tf.keras 2 `.h5` files are 422 (the "
    "detail says how to convert); a file over the size cap is 413.",
    responses=problem_responses({400: "The multipart body itself could not be parsed; send multipart/form-data "
                                      "with the file in a field named `file`.",
                                 413: "Over the weights size cap (LRRT_MAX_WEIGHTS_BYTES).",
                                 422: "Not a usable Keras 3 .weights.h5; `detail` says why."}),
)
def upload_weights(
    file: Annotated[UploadFile, File(description="The .weights.h5 file.")],
    request: Request,
    response: Response,
    tenant: TenantDep,
    weights: WeightsDep,
    settings: SettingsDep,
) -> Weights:
    weights_id = weights.new_id()
    staged = weights.staging_path(weights_id)
    staged.parent.mkdir(parents=True, exist_ok=True)
    limit = settings.max_weights_bytes
    try:
        stage_upload(file.file, staged, limit, advice=SAVE_ADVICE,
                     over=f"The file is over this server's weights limit of {limit:,} bytes. Ask the operator to raise "
                          "LRRT_MAX_WEIGHTS_BYTES.")
        try:
            summary = inspect_weights(staged, limit)
        except WeightsError as exc:
            raise ProblemError(422, exc.slug, exc.detail[0].upper() + exc.detail[1:],
                               title="The weights file cannot be used", **exc.extensions) from None
        meta = weights.add(weights_id, tenant, staged, filename=(file.filename or "")[:255],
                           sha256=sha256_file(staged), variables=summary.variables)
    finally:
        staged.unlink(missing_ok=True)
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/v1/weights/{weights_id}"
    return Weights(**meta)


@router.get("", response_model=WeightsPage, summary="List your weights",
            description="Newest first. Follow `next_page_token` for more.",
            responses=problem_responses({422: "Bad page_size or page_token."}))
def list_weights(
    tenant: TenantDep,
    weights: WeightsDep,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    page_token: Annotated[str | None, Query(pattern=r"^[0-9]+(\.[0-9]+)?$",
                                            description="Opaque: the next_page_token of the previous page.")] = None,
) -> WeightsPage:
    items, token = weights.page(tenant, page_size=page_size, page_token=page_token)
    return WeightsPage(items=[Weights(**meta) for meta in items], next_page_token=token)


@router.get("/{weights_id}", response_model=Weights, summary="Uploaded weights' metadata", responses=NOT_FOUND)
def get_weights(weights: OwnedWeights) -> Weights:
    return Weights(**weights)


@router.delete(
    "/{weights_id}",
    status_code=204,
    response_description="Deleted.",
    summary="Delete uploaded weights",
    description="Removes the file and its metadata. Queued jobs that use them will fail with a weights error.",
    responses=NOT_FOUND,
)
def delete_weights(weights_meta: OwnedWeights, tenant: TenantDep, weights: WeightsDep) -> Response:
    weights.delete(weights_meta["id"], tenant)
    return Response(status_code=204)
