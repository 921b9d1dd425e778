"""Drawing detections onto an image, for people to look at."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BOX_COLOUR = (0, 255, 64)
TEXT_COLOUR = (0, 0, 0)


def draw_faces(pixels: np.ndarray, faces: np.ndarray, *, min_score: float = 0.5) -> Image.Image:
    """A copy of an RGB array with every face of score >= ``min_score`` boxed and labelled."""
    image = Image.fromarray(pixels)
    canvas = ImageDraw.Draw(image)
    line = max(1, round(min(image.size) / 400))
    font = ImageFont.load_default(size=max(10, min(image.size) // 50))
    for x1, y1, x2, y2, score in faces[faces[:, 4] >= min_score]:
        canvas.rectangle((x1, y1, x2, y2), outline=BOX_COLOUR, width=line)
        label = f"{score:.2f}"
        left, top, right, bottom = canvas.textbbox((x1, y1), label, font=font)
        height = bottom - top
        canvas.rectangle((x1, y1 - height - 2, x1 + right - left + 2, y1), fill=BOX_COLOUR)
        canvas.text((x1 + 1, y1 - height - 2 - (top - y1)), label, fill=TEXT_COLOUR, font=font)
    return image
