"""Faces followed across a video's frames: a face found in some frames stays hidden in the
frames between, where it moved to.

ByteTrack (from ``supervision``, the ``video`` extra) links each frame's faces into
tracks, matching them on where a Kalman filter expects each track to be. Frames wait in
a look-ahead buffer of ``hold`` frames; a frame leaves with its own faces and, for every
track that misses it but was seen within ``hold`` frames before and after it, that
track's box interpolated between the two sightings (the box moves with the face); a
track seen on one side only within ``hold`` frames (a face found late, or lost early),
or a face no track took (seen once), adds its nearest box. A box that overlaps one of the
frame's own faces, or is centred inside one, is that face under another track (or moved)
and is not added again.

``supervision`` keeps its ByteTrack (deprecated there since 0.28) below 0.31, which
moved it to the ``trackers`` package; that package requires the full OpenCV build, whose
GUI libraries a slim container lacks, so the extra pins ``supervision<0.31``.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Generic, Protocol, TypeVar

import numpy as np
import torch

from model.boxes import box_iou
from model.errors import ExtdError

# A track starts from a face scoring at least this (ByteTrack's default); weaker faces only
# continue a track. Every face the thresholds kept is hidden either way.
TRACK_ACTIVATION = 0.25
# A neighbour's box overlapping one of a frame's own faces this much (or centred inside it)
# is that face, moved.
SAME_FACE_IOU = 0.3


def _same_face(added: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Whether each added box is one of the frame's own faces, moved: they overlap at
    :data:`SAME_FACE_IOU`, or the added box's centre lies inside the own face's box."""
    overlap = box_iou(torch.from_numpy(added[:, :4]), torch.from_numpy(own[:, :4])).numpy()
    cx, cy = (added[:, 0] + added[:, 2]) / 2, (added[:, 1] + added[:, 3]) / 2
    inside = (cx[:, None] > own[None, :, 0]) & (cx[:, None] < own[None, :, 2])
    inside &= (cy[:, None] > own[None, :, 1]) & (cy[:, None] < own[None, :, 3])
    return ((overlap >= SAME_FACE_IOU) | inside).any(axis=1)


class TrackedFrame(Protocol):
    """What the tracker needs of a frame: its place in the video and the faces found in it
    (``x1 y1 x2 y2 score`` rows)."""

    index: int
    faces: np.ndarray


F = TypeVar("F", bound=TrackedFrame)


def _byte_track(hold: int):
    try:
        with warnings.catch_warnings():  # its import and class say where they are going
            warnings.simplefilter("ignore")
            from supervision import Detections
            from supervision.tracker.byte_tracker.core import ByteTrack

            # A track survives a gap of up to 2 * hold frames (its rate of 30 counts frames).
            tracker = ByteTrack(
                track_activation_threshold=TRACK_ACTIVATION,
                lost_track_buffer=max(1, 2 * hold),
                frame_rate=30,
            )
    except ImportError as error:
        raise ExtdError(
            "tracking faces needs supervision: pip install 'extd-face[video]'"
        ) from error
    return tracker, Detections


class FaceTracks(Generic[F]):
    """Frames in, in order; each frame out with the faces to hide in it, ``hold`` frames
    later (:meth:`flush` lets the last ones out)."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self._tracker, self._detections = _byte_track(hold)
        self._waiting: deque[F] = deque()
        self._singles = 0  # faces no track took yet (a track starts on its second sighting)
        # Per frame index (those within ``hold`` of a waiting frame): track id -> its face.
        self._sightings: dict[int, dict[int, np.ndarray]] = {}

    def add(self, frames: Sequence[F]) -> Iterator[tuple[F, np.ndarray]]:
        for frame in frames:
            faces = np.asarray(frame.faces, np.float32).reshape(-1, 5)
            ids = [track if track >= 0 else self._untracked() for track in self._link(faces)]
            self._sightings[frame.index] = dict(zip(ids, faces, strict=True))
            self._waiting.append(frame)
        if frames:
            last = frames[-1].index
            while self._waiting and self._waiting[0].index + self.hold <= last:
                yield self._leave()

    def flush(self) -> Iterator[tuple[F, np.ndarray]]:
        while self._waiting:
            yield self._leave()

    def _untracked(self) -> int:
        """An id of its own for a face no track took: held in the neighbouring frames."""
        self._singles -= 1
        return self._singles

    def _link(self, faces: np.ndarray) -> list[int]:
        """Each face's track id (-1: none yet)."""
        ids = [-1] * len(faces)
        if not len(faces):
            self._tracker.update_with_detections(self._detections.empty())
            return ids
        found = self._detections(
            xyxy=faces[:, :4].astype(np.float32),
            confidence=faces[:, 4].astype(np.float32),
            class_id=np.zeros(len(faces), int),
            data={"row": np.arange(len(faces))},
        )
        tracked = self._tracker.update_with_detections(found)
        for row, track in zip(tracked.data["row"], tracked.tracker_id, strict=True):
            ids[int(row)] = int(track)
        return ids

    def _leave(self) -> tuple[F, np.ndarray]:
        frame = self._waiting.popleft()
        index, own = frame.index, np.asarray(frame.faces, np.float32).reshape(-1, 5)
        near = [i for i in range(index - self.hold, index + self.hold + 1) if i != index]
        tracks = {t for i in near for t in self._sightings.get(i, ())}
        tracks -= self._sightings.get(index, {}).keys()
        added = [self._box_at(track, index) for track in sorted(tracks)]
        self._sightings.pop(index - self.hold, None)
        if not added:
            return frame, own
        added = np.stack(added)
        if len(own):
            added = added[~_same_face(added, own)]
        return frame, np.concatenate([own, added])

    def _box_at(self, track: int, index: int) -> np.ndarray:
        """The track's box in frame ``index``: interpolated between its nearest sightings
        before and after, else the nearest one."""
        before = next(
            (i for i in range(index - 1, index - self.hold - 1, -1) if track in self._seen(i)),
            None,
        )
        after = next(
            (i for i in range(index + 1, index + self.hold + 1) if track in self._seen(i)), None
        )
        if before is None or after is None:
            return self._seen(after if before is None else before)[track]
        share = (index - before) / (after - before)
        start, end = self._seen(before)[track], self._seen(after)[track]
        box = start + (end - start) * share
        box[4] = min(start[4], end[4])
        return box

    def _seen(self, index: int | None) -> dict[int, np.ndarray]:
        return self._sightings.get(index, {}) if index is not None else {}
