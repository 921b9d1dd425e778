"""Video anonymization as background jobs: create, watch, fetch the result, cancel."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from model.errors import ExtdError
from model.video import VIDEO_SUFFIXES, VideoInfo, probe
from service import errors
from service.dependencies import JobsDep, KeyNameDep, PipelineDep, SettingsDep
from service.jobs import Job, JobStore
from service.problems import ProblemError
from service.routes.detection import BINARY, request_body
from service.schemas import JobStatus, VideoParams, problem_responses
from service.uploads import read_form

router = APIRouter(tags=["video jobs"])

VIDEO_BODY = request_body(**{"multipart/form-data": {"video": BINARY}})
MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
}
# FFmpeg's names of containers -> the file suffix a result is written with.
_CONTAINERS = {"mp4": ".mp4", "mov": ".mov", "matroska": ".mkv", "webm": ".webm", "avi": ".avi"}
JOB_ERRORS = problem_responses(
    {
        401: "missing or wrong API key (when keys are configured)",
        404: "no such job (or another key's)",
        503: "not ready yet, or shutting down (see Retry-After)",
    }
)


def status(request: Request, job: Job) -> JobStatus:
    """The job as answered; its URLs are paths, right behind any proxy."""
    result = request.url_for("job_result", job_id=job.id).path if job.state == "done" else None
    return JobStatus(
        id=job.id,
        state=job.state,
        progress=round(job.progress, 4),
        frames_done=job.frames_done,
        frames_total=job.frames_total,
        error=job.error,
        created=job.created,
        updated=job.updated,
        result=result,
        parameters=job.parameters,
    )


def _suffix(filename: str | None, info: VideoInfo) -> str:
    """The upload's own suffix, else the one of its container."""
    suffix = Path(filename or "").suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return suffix
    for name in info.container.split(","):
        if name in _CONTAINERS:
            return _CONTAINERS[name]
    raise errors.UnsupportedVideo(f"a {info.container} container is not supported")


def _checked(upload: Path, filename: str | None, max_seconds: float) -> str:
    """Probe the upload (a thread's work): its suffix, or a refusal (the file is removed)."""
    try:
        info = probe(upload)
        if info.duration_s > max_seconds:
            raise errors.VideoTooLong(
                f"the video lasts {info.duration_s:.0f} s, over the limit of {max_seconds:.0f} s "
                "(EXTD_MAX_VIDEO_SECONDS)",
                limit=round(max_seconds),
            )
        return _suffix(filename, info)
    except ExtdError as error:
        upload.unlink(missing_ok=True)
        raise errors.UnsupportedVideo(str(error)) from error
    except errors.Refusal:
        upload.unlink(missing_ok=True)
        raise


def _owned(jobs: JobStore, job_id: str, key: str | None) -> Job:
    job = jobs.get(job_id)
    if job is None or job.owner != key:
        raise errors.JobNotFound(f"no job {job_id!r}")
    return job


@router.post(
    "/v1/jobs/anonymize",
    status_code=202,
    response_model=JobStatus,
    responses=problem_responses(
        {
            404: "unknown model",
            413: "video too large (EXTD_MAX_VIDEO_BYTES) or too long",
            415: "not a video, corrupt or truncated",
            422: "bad parameters or request body",
        }
    )
    | JOB_ERRORS,
    openapi_extra=VIDEO_BODY,
    summary="Hide the faces of a video, as a background job",
)
async def create_job(
    request: Request,
    response: Response,
    pipeline: PipelineDep,
    jobs: JobsDep,
    settings: SettingsDep,
    key: KeyNameDep,
    params: Annotated[VideoParams, Query()],
) -> JobStatus:
    """Multipart field ``video`` (mp4, mov, mkv, webm, avi). 202 with the job and its
    ``Location``; the result keeps the frames, timing and audio of the upload."""
    model = pipeline.model(params.model)
    form = await read_form(request, max_files=1)
    upload: Path | None = None
    try:
        video = form.get("video")
        if not isinstance(video, UploadFile):
            raise ProblemError(422, "invalid_request", "send the video as the form file 'video'")
        with tempfile.NamedTemporaryFile(dir=jobs.folder, prefix=".upload-", delete=False) as copy:
            upload = Path(copy.name)
            await asyncio.to_thread(shutil.copyfileobj, video.file, copy)
        suffix = await asyncio.to_thread(
            _checked, upload, video.filename, settings.max_video_seconds
        )
    except BaseException:
        if upload is not None:
            upload.unlink(missing_ok=True)  # nothing is left behind by a refused upload
        raise
    finally:
        await form.close()
    parameters = params.job_parameters(model.name, settings.min_face)
    job = await asyncio.to_thread(jobs.create, upload, suffix, parameters, key)
    response.headers["Location"] = request.url_for("job_status", job_id=job.id).path
    return status(request, job)


@router.get(
    "/v1/jobs/{job_id}",
    name="job_status",
    response_model=JobStatus,
    responses=JOB_ERRORS,
    summary="A video job's state and progress",
)
async def job_status(request: Request, job_id: str, jobs: JobsDep, key: KeyNameDep) -> JobStatus:
    return status(request, _owned(jobs, job_id, key))


@router.get(
    "/v1/jobs/{job_id}/result",
    name="job_result",
    response_class=FileResponse,
    responses={200: {"content": {media: {} for media in set(MEDIA_TYPES.values())}}}
    | problem_responses({409: "not done yet"})
    | JOB_ERRORS,
    summary="The anonymized video of a finished job",
)
async def job_result(job_id: str, jobs: JobsDep, key: KeyNameDep) -> FileResponse:
    job = _owned(jobs, job_id, key)
    if job.state != "done":
        raise errors.JobNotFinished(f"job {job_id} is {job.state}")
    return FileResponse(
        jobs.result(job),
        media_type=MEDIA_TYPES.get(job.suffix, "application/octet-stream"),
        filename=f"anonymized{job.suffix}",
    )


@router.delete(
    "/v1/jobs/{job_id}",
    status_code=204,
    response_class=Response,
    responses=JOB_ERRORS,
    summary="Cancel a video job, or remove a finished one with its files",
)
async def delete_job(job_id: str, jobs: JobsDep, key: KeyNameDep) -> Response:
    await asyncio.to_thread(jobs.cancel, _owned(jobs, job_id, key))
    return Response(status_code=204)
