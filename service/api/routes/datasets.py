"""`/v1/datasets`: upload an .npz once, then submit jobs against `dataset:<id>`.

Uploads are validated before anything is kept (`service.uploads`); a rejected file leaves nothing on
disk or in Redis. Datasets are tenant-scoped exactly like jobs: another tenant's id is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Path, Request, Response, UploadFile

from service.api.deps import DatasetsDep, SettingsDep, TenantDep
from service.api.schemas import Dataset, DatasetList
from service.problems import ProblemError, problem_responses
from service.uploads import inspect_npz, stage_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=problem_responses(
    {401: "No or wrong API key.", 422: "A parameter is invalid; `errors` says which."}))

NOT_FOUND = problem_responses({404: "No such dataset for this tenant (another tenant's answers the same)."})


def owned_dataset(
    dataset_id: Annotated[str, Path(description="The id POST /v1/datasets returned.")],
    tenant: TenantDep,
    datasets: DatasetsDep,
) -> dict[str, Any]:
    meta = datasets.get(dataset_id, tenant)
    if meta is None:
        raise ProblemError(404, "dataset-not-found",
                           f"No dataset {dataset_id!r} here: check the id (GET /v1/datasets lists yours).")
    return meta


OwnedDataset = Annotated[dict[str, Any], Depends(owned_dataset)]


@router.post(
    "",
    status_code=201,
    response_model=Dataset,
    response_description="Stored; use its `uri` as dataset.uri. `Location` names it.",
    summary="Upload a dataset (.npz)",
    description="Multipart field `file`: an .npz with numeric arrays `x` and `y` (equal first dimension), "
    "optionally `x_val` and `y_val`, as `np.savez` writes it. Object (pickled) arrays, missing or extra "
    "arrays, mismatched lengths and corrupt files are 422; a file over the size cap is 413.",
    responses=problem_responses({400: "The multipart body itself could not be parsed; send multipart/form-data "
                                      "with the file in a field named `file`.",
                                 413: "Over the dataset size cap (compressed or unpacked).",
                                 422: "Not a usable .npz; `detail` says why."}),
)
def upload_dataset(
    file: Annotated[UploadFile, File(description="The .npz file.")],
    request: Request,
    response: Response,
    tenant: TenantDep,
    datasets: DatasetsDep,
    settings: SettingsDep,
) -> Dataset:
    dataset_id = datasets.new_id()
    staged = datasets.staging_path(dataset_id)
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        stage_upload(file.file, staged, settings.max_dataset_bytes)
        summary = inspect_npz(staged, settings.max_dataset_bytes)
        meta = datasets.add(dataset_id, tenant, staged, shapes=summary.shapes, dtypes=summary.dtypes,
                            filename=(file.filename or "")[:255])
    finally:
        staged.unlink(missing_ok=True)
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/v1/datasets/{dataset_id}"
    return Dataset(**meta)


@router.get("", response_model=DatasetList, summary="List your datasets")
def list_datasets(tenant: TenantDep, datasets: DatasetsDep) -> DatasetList:
    return DatasetList(items=[Dataset(**meta) for meta in datasets.list(tenant)])


@router.get("/{dataset_id}", response_model=Dataset, summary="A dataset's metadata", responses=NOT_FOUND)
def get_dataset(dataset: OwnedDataset) -> Dataset:
    return Dataset(**dataset)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    response_description="Deleted.",
    summary="Delete a dataset",
    description="Removes the file and its metadata. Queued jobs that use it will fail with a dataset error.",
    responses=NOT_FOUND,
)
def delete_dataset(dataset: OwnedDataset, tenant: TenantDep, datasets: DatasetsDep) -> Response:
    datasets.delete(dataset["id"], tenant)
    return Response(status_code=204)
