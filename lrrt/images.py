"""Decoding one untrusted image (JPEG, PNG, WebP) into a uint8 array of the model input's size: shared by the
worker (image folders in object storage) and the client (`Client.upload_image_folder`). Pillow is a
dependency of the base package (matplotlib needs it too)."""

from __future__ import annotations

import io
import warnings

import numpy as np

from lrrt.problems import CapExceeded, DatasetError


def decode_image(body: bytes, name: str, target: tuple[int, int, int], max_pixels: int) -> np.ndarray:
    """One image as uint8 (height, width, channels), resized to `target`; the pixel cap is checked from the
    header before anything is decoded."""
    from PIL import Image, UnidentifiedImageError

    height, width, channels = target
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body), formats=("JPEG", "PNG", "WEBP")) as image:
                w, h = image.size
                if w * h > max_pixels:
                    raise CapExceeded(f"{name} is {w}x{h} pixels; the limit is {max_pixels} (max_image_pixels)",
                                      cap="max_image_pixels", limit=max_pixels, value=w * h)
                image.draft("RGB" if channels == 3 else "L" if channels == 1 else None, (width, height))
                image.load()
                mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
                converted = image.convert(mode)
                if converted.size != (width, height):
                    converted = converted.resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(converted, dtype=np.uint8)
    except CapExceeded:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise CapExceeded(f"{name}: {exc} (max_image_pixels)", cap="max_image_pixels", limit=max_pixels) from None
    except UnidentifiedImageError:
        raise DatasetError(f"{name} is not a JPEG, PNG or WebP image") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise DatasetError(f"{name} could not be decoded (truncated or corrupt?): {str(exc)[:200]}") from None
    return array.reshape(height, width, channels)
