"""Gateway settings: where it listens, who may call it, and every limit that protects it. Defaults are safe:
loopback only, no remote URL fetching, no local file access, bounded request size, media and output length."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..media import MediaLimits

MiB = 1024 * 1024


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # when set, /v1/* needs `Authorization: Bearer <key>`
    allow_dir: str | None = None  # local paths / file:// URLs are readable only inside this folder
    allow_remote_urls: bool = False  # http(s) media URLs are fetched only when this is on
    runtime_lora_dir: str | None = None  # POST /v1/load_lora_adapter accepts artifacts only under this folder
    max_request_bytes: int = 64 * MiB  # whole HTTP body
    max_json_depth: int = 64  # nesting of the JSON body (a JSON schema in response_format included)
    max_media_bytes: int = 32 * MiB  # one decoded media item (base64 payload, file or download)
    max_media_items: int = 8  # media parts per request
    max_audio_seconds: float = 60.0
    max_video_seconds: float = 120.0
    max_frames: int = 64  # frames one video may contribute
    max_pixels: int = 4096 * 4096  # per image or video frame
    max_tokens: int = 1024  # upper bound a request may ask for (and the default when it asks for none)
    max_stop: int = 8  # stop strings per request
    max_messages: int = 64
    max_text_chars: int = 200_000  # total characters of text content per request
    request_timeout_s: float = 300.0  # whole request (queueing + preprocessing + generation)
    remote_timeout_s: float = 10.0
    max_pending: int = 1024  # requests in flight before the gateway answers 429
    embed_batch: int = 16  # requests whose tower work is batched together
    max_n: int = 1  # choices per request

    def __post_init__(self) -> None:
        if self.allow_dir is not None:
            self.allow_dir = os.path.realpath(Path(self.allow_dir).expanduser())
        if self.runtime_lora_dir is not None:
            self.runtime_lora_dir = os.path.realpath(Path(self.runtime_lora_dir).expanduser())

    def media_limits(self) -> MediaLimits:
        return MediaLimits(max_file_bytes=self.max_media_bytes, max_audio_seconds=self.max_audio_seconds,
                           max_video_seconds=self.max_video_seconds, max_frames=self.max_frames,
                           max_pixels=self.max_pixels)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
