"""OpenAI content parts -> AffectProcessor messages, with the allow-list and size limits enforced here.

Parts: `text`, `image_url`, `input_audio` ({data: base64, format}), `audio_url`, `video_url`. URLs may be
`data:` (base64), local paths or `file://` (only inside `allow_dir`: no `..`, symlinks resolved and the opened
file checked again through /proc/self/fd), or http(s) (only when `allow_remote_urls`). Every item becomes bytes
here; decoding happens in the processor through affectllm.media (MediaError -> 400), so no decoder ever opens a
path a client named."""
from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import stat
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from .config import ServeConfig
from .protocol import APIError, Message

PART_TYPES = ("text", "image_url", "input_audio", "audio_url", "video_url")
AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "m4a", "aac", "opus", "webm", "mp4")
_URL_KEY = {"image_url": ("image", "image_url"), "audio_url": ("audio", "audio_url"), "video_url": ("video", "video_url")}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_ROLES = {"developer": "system"}  # the processor's chat templates know system/user/assistant


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class ContentConverter:
    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg

    # ---- one source -> bytes --------------------------------------------------------------------------------
    def _too_big(self, size: int, where: str) -> APIError:
        return APIError(413, f"{where}: media item is {size} bytes, over this server's max_media_bytes "
                             f"({self.cfg.max_media_bytes})", param=where, code="media_too_large")

    def decode_base64(self, data: str, where: str) -> bytes:
        if not isinstance(data, str) or not data:
            raise APIError(400, f"{where}: base64 data must be a non-empty string", param=where)
        if len(data) // 4 * 3 > self.cfg.max_media_bytes + 3:
            raise self._too_big(len(data) // 4 * 3, where)
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, f"{where}: invalid base64 data", param=where, code="invalid_base64") from None

    def _data_url(self, url: str, where: str) -> bytes:
        head, sep, payload = url.partition(",")
        if not sep:
            raise APIError(400, f"{where}: malformed data URL (no ',')", param=where)
        if not head.lower().endswith(";base64"):
            raise APIError(400, f"{where}: data URLs must be base64-encoded ('data:<mime>;base64,...')", param=where)
        return self.decode_base64(payload, where)

    def read_local(self, raw: str, where: str) -> bytes:
        """Read a file the client named, only inside allow_dir, with every check done on what is actually opened."""
        root = self.cfg.allow_dir
        if root is None:
            raise APIError(400, f"{where}: local file paths are disabled on this server (start it with --allow-dir)",
                           param=where, code="local_files_disabled")
        if "\x00" in raw or not raw:
            raise APIError(400, f"{where}: invalid path", param=where)
        if ".." in PurePosixPath(raw).parts:
            raise APIError(400, f"{where}: '..' is not allowed in media paths", param=where, code="path_traversal")
        full = raw if os.path.isabs(raw) else os.path.join(root, raw)
        real = os.path.realpath(full)
        if not _inside(real, root):
            raise APIError(403, f"{where}: '{raw}' is outside the allowed media directory", param=where,
                           code="path_not_allowed")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise APIError(400, f"{where}: file not found: '{raw}'", param=where, code="file_not_found") from None
        except OSError as e:
            raise APIError(400, f"{where}: cannot open '{raw}': {e.strerror}", param=where) from None
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else real
            if not _inside(opened, root):  # swapped for a symlink between the check and the open
                raise APIError(403, f"{where}: '{raw}' is outside the allowed media directory", param=where,
                               code="path_not_allowed")
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise APIError(400, f"{where}: '{raw}' is not a regular file", param=where)
            if st.st_size > self.cfg.max_media_bytes:
                raise self._too_big(st.st_size, where)
            chunks, total = [], 0
            while total <= self.cfg.max_media_bytes:
                block = os.read(fd, 1 << 20)
                if not block:
                    break
                chunks.append(block)
                total += len(block)
            if total > self.cfg.max_media_bytes:
                raise self._too_big(total, where)
            return b"".join(chunks)
        finally:
            os.close(fd)

    async def _remote(self, url: str, where: str) -> bytes:
        if not self.cfg.allow_remote_urls:
            raise APIError(400, f"{where}: remote URLs are disabled on this server (send the media as base64 data, "
                                "or start the server with --allow-remote-urls)", param=where,
                           code="remote_urls_disabled")
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self.cfg.remote_timeout_s, follow_redirects=False) as client:
                async with client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        raise APIError(400, f"{where}: fetching the URL gave HTTP {resp.status_code}", param=where)
                    data = bytearray()
                    async for block in resp.aiter_bytes():
                        data += block
                        if len(data) > self.cfg.max_media_bytes:
                            raise self._too_big(len(data), where)
                    return bytes(data)
        except httpx.HTTPError as e:
            raise APIError(400, f"{where}: cannot fetch the URL: {type(e).__name__}", param=where) from None

    async def fetch(self, url: object, where: str) -> bytes:
        if not isinstance(url, str) or not url:
            raise APIError(400, f"{where}: url must be a non-empty string", param=where)
        scheme = _SCHEME.match(url)
        kind = scheme.group(1).lower() if scheme else ""
        if kind == "data":
            return self._data_url(url, where)
        if kind in ("http", "https"):
            return await self._remote(url, where)
        if kind == "file":
            parsed = urlparse(url)
            if parsed.netloc not in ("", "localhost"):
                raise APIError(400, f"{where}: file:// URLs must not name a host", param=where)
            return await asyncio.to_thread(self.read_local, unquote(parsed.path), where)
        if kind:
            raise APIError(400, f"{where}: unsupported URL scheme '{kind}:' (use data:, file:// or a path)",
                           param=where, code="unsupported_url")
        return await asyncio.to_thread(self.read_local, url, where)

    # ---- parts and messages -----------------------------------------------------------------------------------
    async def _part(self, part: object, where: str) -> dict:
        if not isinstance(part, dict):
            raise APIError(400, f"{where} must be an object with a 'type'", param=where)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise APIError(400, f"{where}.text must be a string", param=f"{where}.text")
            return {"type": "text", "text": text}
        if kind == "input_audio":
            spec = part.get("input_audio")
            if not isinstance(spec, dict):
                raise APIError(400, f"{where}.input_audio must be an object {{data, format}}", param=f"{where}.input_audio")
            fmt = spec.get("format")
            if fmt not in AUDIO_FORMATS:
                raise APIError(400, f"{where}.input_audio.format must be one of {', '.join(AUDIO_FORMATS)}, got {fmt!r}",
                               param=f"{where}.input_audio.format")
            return {"type": "audio", "audio": self.decode_base64(spec.get("data"), f"{where}.input_audio.data")}
        if kind in _URL_KEY:
            media, key = _URL_KEY[kind]
            spec = part.get(key)
            url = spec.get("url") if isinstance(spec, dict) else spec
            if not isinstance(url, str):
                raise APIError(400, f"{where}.{key} must be an object {{\"url\": ...}}", param=f"{where}.{key}")
            return {"type": media, media: await self.fetch(url, f"{where}.{key}.url")}
        shown = kind if isinstance(kind, str) else type(kind).__name__
        raise APIError(400, f"{where}: unknown content part type {shown!r}; supported: {', '.join(PART_TYPES)}",
                       param=f"{where}.type", code="unknown_part_type")

    async def convert(self, messages: list[Message]) -> tuple[list[dict], int]:
        """-> (processor messages, number of media items)."""
        out, n_media, n_chars = [], 0, 0
        for i, m in enumerate(messages):
            role = _ROLES.get(m.role, m.role)
            if m.content is None or isinstance(m.content, str):
                text = m.content or ""
                n_chars += len(text)
                out.append({"role": role, "content": text})
                continue
            parts = []
            for j, part in enumerate(m.content):
                where = f"messages[{i}].content[{j}]"
                if isinstance(part, dict) and part.get("type") in ("input_audio", *_URL_KEY):
                    if m.role != "user":
                        raise APIError(400, f"{where}: media parts are only allowed in user messages", param=where)
                    n_media += 1
                    if n_media > self.cfg.max_media_items:
                        raise APIError(400, f"more than {self.cfg.max_media_items} media items in one request",
                                       param="messages", code="too_many_media_items")
                converted = await self._part(part, where)
                if converted["type"] == "text":
                    n_chars += len(converted["text"])
                parts.append(converted)
            out.append({"role": role, "content": parts})
        if n_chars > self.cfg.max_text_chars:
            raise APIError(400, f"{n_chars} characters of text; at most {self.cfg.max_text_chars}", param="messages")
        return out, n_media


def is_inside(path: str | Path, root: str | Path) -> bool:
    return _inside(os.path.realpath(path), os.path.realpath(root))
