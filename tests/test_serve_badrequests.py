"""A corpus of bad requests against the gateway (hf backend on `tiny`, small limits): every case is a 4xx with a
clear OpenAI error body, the server keeps answering /health and valid requests, and no file outside the allow-list
is ever opened (spies on os.open / open, plus a sentinel file whose access time must not move)."""
from __future__ import annotations

import builtins
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from serve_helpers import b64, image_part, make_lora_artifact, mp4_bytes, png_bytes, wav_bytes

KEY = "corpus-key"
LIMITS = dict(max_request_bytes=2 * 1024 * 1024, max_media_bytes=512 * 1024, max_media_items=3, max_tokens=64,
              max_pixels=200 * 200, max_audio_seconds=4.0, max_text_chars=20_000)
OPENED: list[str] = []


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    allow, outside, runtime = root / "allow", root / "outside", root / "runtime"
    for d in (allow, outside, runtime, allow / "sub"):
        d.mkdir()
    (allow / "face.png").write_bytes(png_bytes())
    (allow / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
    (allow / "empty.wav").write_bytes(b"")
    (allow / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (LIMITS["max_media_bytes"] + 10))
    (outside / "secret.png").write_bytes(png_bytes(9))
    (allow / "link_out.png").symlink_to(outside / "secret.png")
    (allow / "linkdir").symlink_to(outside)
    os.mkfifo(allow / "pipe.wav")
    os.utime(outside / "secret.png", (1000, 2_000_000_000))  # atime < mtime: under relatime any read moves it
    (runtime / "not_an_artifact").mkdir()
    return {"root": root, "allow": allow, "outside": outside, "runtime": runtime}


@pytest.fixture(scope="module")
def server(dirs):
    from affectllm.serve.config import ServeConfig
    from affectllm.serve.server import start

    cfg = ServeConfig(port=0, api_key=KEY, allow_dir=str(dirs["allow"]), runtime_lora_dir=str(dirs["runtime"]),
                      **LIMITS)
    running = start("tiny", backend="hf", cfg=cfg)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def spy(dirs):
    """Record every path opened from Python while the corpus runs."""
    real_os_open, real_open = os.open, builtins.open

    def os_open(path, *a, **kw):
        OPENED.append(os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path))
        return real_os_open(path, *a, **kw)

    def py_open(file, *a, **kw):
        if isinstance(file, (str, bytes, os.PathLike)):
            OPENED.append(os.fsdecode(file))
        return real_open(file, *a, **kw)

    os.open, builtins.open = os_open, py_open
    yield OPENED
    os.open, builtins.open = real_os_open, real_open


def chat(content=None, **kw) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": content if content is not None else "hi"}],
            "max_tokens": 4, "temperature": 0, **kw}


def url_part(kind: str, url: str) -> dict:
    return {"type": f"{kind}_url", f"{kind}_url": {"url": url}}


def png_of(h: int, w: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def nested(depth: int) -> dict:
    """A JSON schema nesting `depth` objects (each level adds two: the schema and its `properties`)."""
    node: dict = {"type": "string"}
    for _ in range(depth // 2):
        node = {"type": "object", "properties": {"a": node}}
    return node


def raw_json(body: dict) -> bytes:
    """ASCII JSON, so a lone surrogate travels as its escape (httpx's json= cannot encode one)."""
    return json.dumps(body).encode()


def cases(d: dict) -> list[tuple]:
    """(id, request kwargs for httpx, expected status, substring of the error message)."""
    allow, outside = d["allow"], d["outside"]
    J = lambda body: {"json": body}  # noqa: E731
    C = lambda content: J(chat(content))  # noqa: E731
    img = lambda url: C([url_part("image", url), {"type": "text", "text": "?"}])  # noqa: E731
    wav = wav_bytes()
    return [
        # authentication
        ("no_api_key", {"json": chat(), "headers": {"Authorization": ""}}, 401, "missing API key"),
        ("wrong_api_key", {"json": chat(), "headers": {"Authorization": "Bearer nope"}}, 401, "incorrect API key"),
        ("basic_auth", {"json": chat(), "headers": {"Authorization": f"Basic {KEY}"}}, 401, "incorrect API key"),
        # body
        ("malformed_json", {"content": b'{"model": "tiny",'}, 400, "malformed JSON"),
        ("empty_body", {"content": b""}, 400, "malformed JSON"),
        ("invalid_utf8", {"content": b"\xff\xfe\xfd"}, 400, "malformed JSON"),
        ("body_is_list", {"content": b"[]"}, 400, "must be a JSON object"),
        ("body_is_string", {"content": b'"hello"'}, 400, "must be a JSON object"),
        ("oversized_body", {"content": b'{"x": "' + b"a" * (3 * 1024 * 1024) + b'"}'}, 413, "over this server's limit"),
        # nesting: past Python's recursion limit (the JSON decoder itself) and past the server's depth limit
        ("json_nested_past_recursion_limit", {"content": b'{"model": "tiny", "messages": ' + b"[" * 100_000
                                              + b"]" * 100_000 + b"}"}, 400, "nests deeper"),
        ("json_nested_in_object_values", {"content": b'{"model": "tiny", "messages": [], "x": ' + b'{"a": ' * 50_000
                                          + b"1" + b"}" * 50_000 + b"}"}, 400, "nests deeper"),
        ("json_nested_response_format", J(chat(response_format={"type": "json_schema", "json_schema": {
            "schema": nested(300)}})), 400, "nests deeper"),
        ("json_nested_content_part", C([{"type": "text", "text": nested(300)}]), 400, "nests deeper"),
        ("json_nested_lora_body", {"path": "/v1/load_lora_adapter", "content": b"[" * 20_000 + b"]" * 20_000},
         400, "nests deeper"),
        # lone UTF-16 surrogates where the request is refused anyway: the error must still be sendable
        ("surrogate_in_unknown_key", {"content": raw_json({**chat(), "x\ud800": 1})}, 400,
         "unrecognized request argument"),
        ("surrogate_in_model_name", {"content": raw_json({**chat(), "model": "tiny\ud800"})}, 404, "does not exist"),
        ("surrogate_in_bad_role", {"content": raw_json({"model": "tiny", "messages": [
            {"role": "user\udfff", "content": "hi"}]})}, 400, "role"),
        ("surrogate_in_lora_name", {"path": "/v1/unload_lora_adapter", "content": raw_json({"lora_name": "\ud800"})},
         404, "\ufffd"),
        # top-level schema
        ("missing_model", J({"messages": [{"role": "user", "content": "hi"}]}), 400, "missing required parameter: model"),
        ("missing_messages", J({"model": "tiny"}), 400, "missing required parameter: messages"),
        ("empty_messages", J({"model": "tiny", "messages": []}), 400, "messages"),
        ("messages_not_list", J({"model": "tiny", "messages": "hi"}), 400, "messages"),
        ("unknown_field", J(chat(foo=1)), 400, "unrecognized request argument supplied: foo"),
        ("model_not_string", J({**chat(), "model": 123}), 400, "model"),
        ("unknown_model", J({**chat(), "model": "gpt-9"}), 404, "does not exist"),
        ("bad_role", J({"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}), 400, "role"),
        ("message_not_object", J({"model": "tiny", "messages": ["hi"]}), 400, "messages.0"),
        ("content_wrong_type", C(123), 400, "content"),
        ("no_user_message", J({"model": "tiny", "messages": [{"role": "system", "content": "x"}]}), 400, "user"),
        ("temperature_string", J(chat(temperature="hot")), 400, "temperature"),
        ("temperature_too_high", J(chat(temperature=5)), 400, "temperature"),
        ("top_p_zero", J(chat(top_p=0)), 400, "top_p"),
        ("max_tokens_zero", J(chat(max_tokens=0)), 400, "max_tokens"),
        ("max_tokens_negative", J(chat(max_tokens=-5)), 400, "max_tokens"),
        ("max_tokens_oversized", J(chat(max_tokens=LIMITS["max_tokens"] + 1)), 400, "over this server's limit"),
        ("max_tokens_float", J(chat(max_tokens=1.5)), 400, "max_tokens"),
        ("max_tokens_bool", J(chat(max_tokens=True)), 400, "max_tokens"),
        ("n_two", J(chat(n=2)), 400, "n=2"),
        ("too_many_stops", J(chat(stop=[str(i) for i in range(9)])), 400, "stop strings"),
        ("stop_wrong_type", J(chat(stop=123)), 400, "stop"),
        ("empty_stop", J(chat(stop=[""])), 400, "stop"),
        ("top_logprobs_without_logprobs", J(chat(top_logprobs=2)), 400, "needs logprobs"),
        ("top_logprobs_too_many", J(chat(logprobs=True, top_logprobs=21)), 400, "top_logprobs"),
        ("logprobs_string", J(chat(logprobs="yes")), 400, "logprobs"),
        ("stream_string", J(chat(stream="yes")), 400, "stream"),
        ("stream_options_without_stream", J(chat(stream_options={"include_usage": True})), 400, "stream_options"),
        ("seed_string", J(chat(seed="7")), 400, "seed"),
        ("response_format_unknown", J(chat(response_format={"type": "xml"})), 400, "response_format"),
        ("json_schema_missing", J(chat(response_format={"type": "json_schema"})), 400, "json_schema"),
        ("json_schema_not_object", J(chat(response_format={"type": "json_schema", "json_schema": {"schema": 5}})),
         400, "schema"),
        ("context_too_long", C("x" * 4500), 400, "context"),
        ("text_too_long", C("x" * (LIMITS["max_text_chars"] + 1)), 400, "characters"),
        # content parts
        ("part_not_object", C(["hello"]), 400, "must be an object"),
        ("part_missing_type", C([{"text": "hi"}]), 400, "unknown content part type"),
        ("unknown_part_type", C([{"type": "file", "file": {}}]), 400, "unknown content part type 'file'"),
        ("part_type_not_string", C([{"type": 5}]), 400, "unknown content part type"),
        ("text_not_string", C([{"type": "text", "text": 5}]), 400, "text must be a string"),
        ("image_url_not_object", C([{"type": "image_url", "image_url": 5}]), 400, "image_url must be an object"),
        ("image_url_missing_url", C([{"type": "image_url", "image_url": {}}]), 400, "image_url must be an object"),
        ("input_audio_not_object", C([{"type": "input_audio", "input_audio": "abc"}]), 400, "must be an object"),
        ("input_audio_missing_format", C([{"type": "input_audio", "input_audio": {"data": b64(wav)}}]), 400, "format"),
        ("input_audio_bad_format", C([{"type": "input_audio", "input_audio": {"data": b64(wav), "format": "exe"}}]),
         400, "format"),
        ("input_audio_bad_base64", C([{"type": "input_audio", "input_audio": {"data": "!!!!", "format": "wav"}}]),
         400, "invalid base64"),
        ("input_audio_empty", C([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]),
         400, "non-empty"),
        ("data_url_not_base64", img("data:image/png,abcd"), 400, "base64"),
        ("data_url_no_comma", img("data:image/png;base64"), 400, "malformed data URL"),
        ("huge_base64", img("data:image/png;base64," + "A" * (LIMITS["max_media_bytes"] * 4 // 3 + 400)),
         413, "max_media_bytes"),
        ("corrupt_png", img("data:image/png;base64," + b64(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 40)), 400, "image"),
        ("corrupt_wav", C([{"type": "input_audio", "input_audio": {"data": b64(b"RIFF\x10\x00\x00\x00WAVEjunk" * 9),
                                                                   "format": "wav"}}]), 400, "audio"),
        ("corrupt_mp4", C([url_part("video", "data:video/mp4;base64," + b64(mp4_bytes()[:400]))]), 400, "corrupt"),
        ("audio_sent_as_image", img("data:image/png;base64," + b64(wav)), 400, "load_image"),
        ("image_sent_as_audio", C([{"type": "input_audio", "input_audio": {"data": b64(png_bytes()), "format": "wav"}}]),
         400, "audio"),
        ("text_sent_as_video", C([url_part("video", "data:video/mp4;base64," + b64(b"just some text" * 10))]),
         400, "unsupported format"),
        ("too_many_media_items", C([image_part() for _ in range(LIMITS["max_media_items"] + 1)]), 400,
         "media items"),
        ("too_many_pixels", C([image_part(png_of(300, 300))]), 400, "max_pixels"),
        ("audio_too_long", C([{"type": "input_audio", "input_audio": {"data": b64(wav_bytes(6.0)), "format": "wav"}}]),
         400, "max_audio_seconds"),
        ("media_in_assistant_message", J({"model": "tiny", "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": [image_part()]}]}), 400,
         "only allowed in user messages"),
        # URLs and paths
        ("remote_http", img("http://127.0.0.1:1/x.png"), 400, "remote URLs are disabled"),
        ("remote_https", img("https://example.com/x.png"), 400, "remote URLs are disabled"),
        ("ftp_scheme", img("ftp://example.com/x.png"), 400, "unsupported URL scheme"),
        ("javascript_scheme", img("javascript:alert(1)"), 400, "unsupported URL scheme"),
        ("empty_url", img(""), 400, "non-empty string"),
        ("traversal_relative", img("../outside/secret.png"), 400, "'..' is not allowed"),
        ("traversal_in_file_url", img(f"file://{allow}/../outside/secret.png"), 400, "'..' is not allowed"),
        ("traversal_url_encoded", img(f"file://{allow}/%2e%2e/outside/secret.png"), 400, "'..' is not allowed"),
        ("absolute_outside", img("/etc/passwd"), 403, "outside the allowed media directory"),
        ("absolute_sentinel", img(str(outside / "secret.png")), 403, "outside the allowed media directory"),
        ("file_url_sentinel", img((outside / "secret.png").as_uri()), 403, "outside the allowed media directory"),
        ("symlink_escape", img("link_out.png"), 403, "outside the allowed media directory"),
        ("symlink_dir_escape", img("linkdir/secret.png"), 403, "outside the allowed media directory"),
        ("file_url_with_host", img("file://evil.example/x.png"), 400, "must not name a host"),
        ("missing_file", img("nope.png"), 400, "file not found"),
        ("directory", img("sub"), 400, "not a regular file"),
        ("fifo", C([url_part("audio", "pipe.wav")]), 400, "not a regular file"),
        ("null_byte", img("face\x00.png"), 400, "invalid path"),
        ("empty_file", C([url_part("audio", "empty.wav")]), 400, "empty"),
        ("corrupt_file", img("corrupt.png"), 400, "image"),
        ("oversized_file", img("big.png"), 413, "max_media_bytes"),
        # routes and admin endpoints
        ("get_on_post_route", {"method": "GET"}, 405, "Method Not Allowed"),
        ("unknown_route", {"path": "/v1/nope"}, 404, "Not Found"),
        ("lora_outside_dir", {"path": "/v1/load_lora_adapter", "json": {"lora_name": "x",
                                                                        "lora_path": str(outside)}}, 403, "outside"),
        ("lora_traversal", {"path": "/v1/load_lora_adapter", "json": {"lora_name": "x", "lora_path": "../outside"}},
         403, "outside"),
        ("lora_not_artifact", {"path": "/v1/load_lora_adapter", "json": {"lora_name": "x",
                                                                         "lora_path": "not_an_artifact"}}, 400,
         "not a trained artifact"),
        ("lora_bad_body", {"path": "/v1/load_lora_adapter", "json": {"lora_name": 5}}, 400, "lora_name"),
        ("unload_unknown", {"path": "/v1/unload_lora_adapter", "json": {"lora_name": "ghost"}}, 404, "ghost"),
    ]


CASE_IDS = [c[0] for c in cases({"allow": Path("/a"), "outside": Path("/o")})]


@pytest.fixture(scope="module")
def corpus(dirs):
    return {c[0]: c[1:] for c in cases(dirs)}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_request(server, corpus, spy, case_id):
    kwargs, status, needle = corpus[case_id]
    kwargs = dict(kwargs)
    method, path = kwargs.pop("method", "POST"), kwargs.pop("path", "/v1/chat/completions")
    headers = {"Authorization": f"Bearer {KEY}", **kwargs.pop("headers", {})}
    headers = {k: v for k, v in headers.items() if v}
    resp = httpx.request(method, server.url + path, headers=headers, timeout=60, **kwargs)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert needle.lower() in err["message"].lower(), err["message"]


SURROGATE_PLACES = {
    "user_text": lambda: chat("I feel \ud800 odd"),
    "text_part": lambda: chat([{"type": "text", "text": "x\udc00y"}]),
    "system_message": lambda: {**chat(), "messages": [{"role": "system", "content": "be \ud800 brief"},
                                                      {"role": "user", "content": "hi"}]},
    "assistant_message": lambda: {**chat(), "messages": [{"role": "user", "content": "hi"},
                                                         {"role": "assistant", "content": "\udfff"},
                                                         {"role": "user", "content": "and?"}]},
    "message_name": lambda: {**chat(), "messages": [{"role": "user", "content": "hi", "name": "a\ud800"}]},
    "stop_string": lambda: chat(stop=["\ud800"]),
    "user_field": lambda: chat(user="\ud83d"),
    "streamed": lambda: chat("\ud800", stream=True),
}


@pytest.mark.parametrize("place", list(SURROGATE_PLACES))
def test_lone_surrogates_are_replaced_not_a_500(server, place):
    """A lone UTF-16 surrogate (what a client that cuts a string mid-emoji sends) is read as U+FFFD, like a broken
    UTF-8 sequence, wherever it appears; the request is answered."""
    resp = httpx.post(server.url + "/v1/chat/completions", content=raw_json(SURROGATE_PLACES[place]()), timeout=60,
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    if place == "streamed":
        assert resp.text.rstrip().endswith("data: [DONE]") and '"error"' not in resp.text
    else:
        assert resp.json()["choices"][0]["message"]["role"] == "assistant"


def test_sanitize_keeps_valid_pairs_and_bounds_depth_without_recursion():
    from affectllm.serve.jsonbody import loads
    from affectllm.serve.protocol import APIError

    assert loads(b'{"a\\ud800": ["\\ud83d\\ude00", "\\udc00x"]}', 8) == {"a\ufffd": ["\U0001F600", "\ufffdx"]}
    assert loads(b"[" * 8 + b"]" * 8, 8) == [[[[[[[[]]]]]]]]
    for raw in (b"[" * 9 + b"]" * 9, b"[" * 500_000 + b"]" * 500_000):
        with pytest.raises(APIError) as info:
            loads(raw, 8)
        assert info.value.status == 400 and "nests deeper" in info.value.message


def test_corpus_size_and_server_survives(server, dirs, spy):
    """Runs after the corpus (file order): the server still answers, and nothing outside the allow-list was read."""
    assert len(CASE_IDS) >= 50
    headers = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(server.url + "/health").status_code == 200
    ok = httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=60,
                    json=chat([{"type": "image_url", "image_url": {"url": "face.png"}}, {"type": "text", "text": "?"}]))
    assert ok.status_code == 200, ok.text
    outside = str(dirs["outside"])
    assert any(p.startswith(str(dirs["allow"])) for p in spy), "the spy saw no reads at all"
    assert not [p for p in spy if p.startswith(outside) or p.startswith("/etc/passwd")], spy
    assert os.stat(dirs["outside"] / "secret.png").st_atime == 1000, "the sentinel outside the allow-list was read"
