"""The loaded models."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from service.dependencies import ApiKeyDep, RegistryDep
from service.schemas import ModelInfo, ModelList, problem_responses

router = APIRouter(tags=["models"], dependencies=[ApiKeyDep])


@router.get(
    "/v1/models",
    response_model=ModelList,
    responses=problem_responses({503: "not ready yet"}),
    summary="The loaded models",
)
async def list_models(registry: RegistryDep) -> ModelList:
    default, missing = registry.default_name, registry.missing_files
    return ModelList(
        models=[
            ModelInfo(
                **asdict(model),
                file_present=model.name not in missing,
                default=model.name == default,
            )
            for model in registry.describe()
        ]
    )
