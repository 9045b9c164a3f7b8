"""A small English emotion cue-word list (category names follow GoEmotions, plus SemEval's anticipation,
pessimism and trust), so text explanations can cite the words of the text that carry emotion, and only those.
Deliberately small and literal: a word is cited only when it occurs in the text; a negator just before it
("not happy") is reported with it rather than hidden."""
from __future__ import annotations

import re

CUE_WORDS: dict[str, tuple[str, ...]] = {
    "admiration": ("admire", "admired", "amazing", "awesome", "beautiful", "brilliant", "excellent", "fantastic",
                   "impressive", "incredible", "wonderful", "respect", "genius", "masterpiece"),
    "amusement": ("haha", "hahaha", "lol", "lmao", "lmfao", "funny", "hilarious", "amusing", "laugh", "laughing",
                  "laughed"),
    "anger": ("angry", "anger", "furious", "mad", "rage", "pissed", "hate", "hated", "hates", "outraged", "livid"),
    "annoyance": ("annoying", "annoyed", "irritating", "irritated", "ugh"),
    "approval": ("agree", "agreed", "approve", "approved"),
    "caring": ("care", "caring", "hug", "hugs", "comfort"),
    "confusion": ("confused", "confusing", "huh", "puzzled", "unsure"),
    "curiosity": ("curious", "wonder", "wondering", "intrigued", "interested"),
    "desire": ("want", "wanted", "wish", "wishes", "desire", "crave", "craving", "longing"),
    "disappointment": ("disappointed", "disappointing", "disappointment", "letdown"),
    "disapproval": ("disagree", "disapprove", "unacceptable"),
    "disgust": ("disgusting", "disgusted", "disgust", "gross", "nasty", "vile", "yuck", "revolting"),
    "embarrassment": ("embarrassed", "embarrassing", "awkward", "ashamed", "cringe"),
    "excitement": ("excited", "exciting", "thrilled", "pumped", "hyped"),
    "fear": ("afraid", "scared", "fear", "terrified", "frightened", "scary", "horrified", "terrifying"),
    "gratitude": ("thanks", "thank", "thankful", "grateful", "appreciate", "appreciated"),
    "grief": ("grief", "grieving", "mourn", "mourning", "condolences"),
    "joy": ("happy", "glad", "joy", "joyful", "delighted", "yay", "enjoy", "enjoyed", "cheerful", "happiness"),
    "love": ("love", "loved", "loving", "lovely", "adore", "adorable"),
    "nervousness": ("nervous", "anxious", "worried", "worry", "anxiety", "uneasy"),
    "optimism": ("hope", "hopeful", "hopefully", "optimistic", "confident"),
    "pride": ("proud", "pride"),
    "realization": ("realize", "realized", "realise", "realised"),
    "relief": ("relief", "relieved", "phew"),
    "remorse": ("sorry", "apologize", "apologise", "regret", "regrets", "guilty"),
    "sadness": ("sad", "sadness", "unhappy", "depressed", "depressing", "cry", "crying", "tears", "heartbroken",
                "miserable", "lonely", "upset"),
    "surprise": ("surprised", "surprising", "surprise", "wow", "whoa", "shocked", "omg", "unexpected"),
    "anticipation": ("anticipate", "anticipation", "await", "awaiting", "expecting"),
    "pessimism": ("hopeless", "pessimistic", "doomed"),
    "trust": ("trust", "faith", "reliable"),
}
WORD_TO_CATEGORY = {w: c for c, ws in CUE_WORDS.items() for w in ws}
NEGATORS = frozenset({"not", "no", "never", "don't", "dont", "isn't", "wasn't", "aren't", "ain't", "didn't",
                      "can't", "cannot", "won't", "nothing", "hardly"})
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")


def find_cue_words(text: str | None) -> list[dict]:
    """Cue words in order of first occurrence: [{"word", "category", "negated_by"}], each word once."""
    tokens = _TOKEN.findall((text or "").lower().replace("\u2019", "'"))
    out, seen = [], set()
    for i, tok in enumerate(tokens):
        cat = WORD_TO_CATEGORY.get(tok)
        if cat is None or tok in seen:
            continue
        seen.add(tok)
        neg = next((t for t in tokens[max(0, i - 2):i] if t in NEGATORS), None)
        out.append({"word": tok, "category": cat, "negated_by": neg})
    return out
