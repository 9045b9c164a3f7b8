"""Serving: an OpenAI-compatible gateway (FastAPI) that runs processor + towers + projectors and forwards prompt
embeddings to vLLM (stock LLM + our LoRA adapters), or generates in-process with transformers (`--backend hf`).

    config.py    ServeConfig: listen address, API key, allow-list, every limit
    protocol.py  request model (strict), OpenAI error body, response / chunk builders
    content.py   content parts -> bytes (data:, allow-listed paths, optional remote URLs)
    models.py    served models: base + one entry per LoRA artifact
    prepare.py   processor + build_inputs_embeds, batched across requests
    backends.py  VLLMBackend (Completions + prompt_embeds), HFBackend (transformers generate)
    constrain.py JSON-constrained decoding for the hf backend (lm-format-enforcer)
    launcher.py  the vLLM process (its own venv, process group, loopback, private temp dir)
    gateway.py   the FastAPI app
    server.py    build / start (thread) / run (CLI)
    client.py    AffectClient and `affectllm chat --server`
"""
