"""Video anonymization as background jobs: create, watch, fetch the result, cancel."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from model.errors import ExtdError
from model.video import FrameTooLargeError, VideoLimits, VideoTooLongError, probe
from service import errors
from service.components import video_limits
from service.dependencies import JobsDep, KeyNameDep, PipelineDep, SettingsDep
from service.jobs.store import STORE_ERRORS, JobRecord, JobStore
from service.problems import ProblemError
from service.routes.openapi import BINARY, request_body
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
JOB_ERRORS = problem_responses(
    {
        401: "missing or wrong API key (when keys are configured)",
        404: "no such job (or another key's)",
        503: "not ready, shutting down, or the jobs' queue is unreachable (see Retry-After)",
    }
)
T = TypeVar("T")


async def _in_store(call: Callable[..., T], *args: object) -> T:
    """A call to the jobs' store, off the event loop; an unreachable store is a 503."""
    try:
        return await asyncio.to_thread(call, *args)
    except STORE_ERRORS as error:
        raise errors.QueueUnavailable(
            f"the jobs' queue cannot be reached ({type(error).__name__}): try again shortly"
        ) from error


def status(request: Request, job: JobRecord) -> JobStatus:
    """The job as answered; its URLs are paths, right behind any proxy."""
    result = request.url_for("job_result", job_id=job.id).path if job.state == "done" else None
    return JobStatus(
        id=job.id,
        state=job.state,
        progress=round(job.progress, 4),
        frames_done=job.frames_done,
        frames_total=job.frames_total,
        error=job.error,
        error_code=job.error_code,
        attempts=job.attempts,
        created=job.created,
        updated=job.updated,
        result=result,
        parameters=job.parameters,
    )


def _checked(upload: Path, filename: str | None, limits: VideoLimits) -> str:
    """Probe the upload (a thread's work): the suffix its result is written with, or a
    refusal. Its container comes from its bytes; the limits are checked again while it is
    decoded, whatever its header says."""
    try:
        return probe(upload, limits).suffix(filename)
    except VideoTooLongError as error:
        raise errors.VideoTooLong(
            f"{error} (EXTD_MAX_VIDEO_SECONDS)", limit=round(limits.max_seconds or 0)
        ) from error
    except FrameTooLargeError as error:
        raise errors.VideoFrameTooLarge(
            f"{error} (EXTD_MAX_IMAGE_PIXELS)", limit=limits.max_pixels
        ) from error
    except ExtdError as error:
        raise errors.UnsupportedVideo(str(error)) from error


async def _owned(jobs: JobStore, job_id: str, key: str | None) -> JobRecord:
    job = await _in_store(jobs.get, job_id)
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
            429: "EXTD_MAX_QUEUED_JOBS jobs are waiting already (see Retry-After)",
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
        suffix = await asyncio.to_thread(_checked, upload, video.filename, video_limits(settings))
        parameters = params.job_parameters(model.name, settings.min_face)
        job = await _in_store(jobs.create, upload, suffix, parameters, key)
    finally:
        await form.close()
        if upload is not None:
            upload.unlink(missing_ok=True)  # moved into the job's folder, unless refused
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
    return status(request, await _owned(jobs, job_id, key))


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
    job = await _owned(jobs, job_id, key)
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
    await _in_store(jobs.cancel, (await _owned(jobs, job_id, key)).id)
    return Response(status_code=204)
