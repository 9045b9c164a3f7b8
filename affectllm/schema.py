"""The structured emotion answer our prompts request, in one place: prompts describe it, the parser reads it,
the gateway offers it as `response_format`, and recipes train towards it.

    {"labels": ["frustrated", "angry"],          # open vocabulary, most salient first
     "explanation": "raised voice and ...",      # grounded rationale citing the modalities used
     "confidence": 0.7,                           # optional, probability the first label is right, 0..1
     "valence": -0.6, "arousal": 0.8}             # optional, each in -1..1
"""
from __future__ import annotations

ANSWER_KEYS = ("labels", "explanation", "confidence", "valence", "arousal")
VALENCE_RANGE = (-1.0, 1.0)
AROUSAL_RANGE = (-1.0, 1.0)
CONFIDENCE_RANGE = (0.0, 1.0)


def answer_json_schema(with_confidence: bool = False, with_dimensions: bool = False) -> dict:
    """JSON schema of the structured answer (for vLLM/OpenAI `response_format`)."""
    props: dict = {
        "labels": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 8},
        "explanation": {"type": "string"},
    }
    required = ["labels", "explanation"]
    if with_confidence:
        props["confidence"] = {"type": "number", "minimum": 0, "maximum": 1}
        required.append("confidence")
    if with_dimensions:
        for k in ("valence", "arousal"):
            props[k] = {"type": "number", "minimum": -1, "maximum": 1}
            required.append(k)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}
