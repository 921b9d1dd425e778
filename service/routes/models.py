"""The loaded models."""

from __future__ import annotations

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
    default = registry.default_name
    return ModelList(
        models=[
            ModelInfo(
                name=m.name,
                variant=m.variant,
                parameters=m.parameters,
                source=m.detector.checkpoint.source,
                sha256=m.sha256,
                file=m.path.name,
                file_present=m.name not in registry.missing_files,
                backend=m.backend,
                device=m.device,
                default=m.name == default,
                training=m.detector.checkpoint.training,
            )
            for m in registry.all()
        ]
    )
