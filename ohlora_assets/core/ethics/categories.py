"""The five ethics categories, declared once: the names the CSV and the model use, their ASCII keys,
and which of them can block a user."""

from __future__ import annotations

LOVE = "사랑 고백/만남"
GENERAL = "일반"
POLITICS = "정치"
PAEDRIP = "패드립"
HATE = "혐오/기타"

# The order of score columns, of the training pairs and of the category embeddings a model is trained
# against: reordering it changes what a trained model's scores mean.
ETHICS_CATEGORIES = (LOVE, GENERAL, POLITICS, PAEDRIP, HATE)
BLOCKABLE = (LOVE, POLITICS, PAEDRIP, HATE)  # `일반` is what every other category is measured against
# ASCII names for file names and plot labels (no Hangul font can be assumed on a server).
CATEGORY_KEYS = {LOVE: "love", GENERAL: "general", POLITICS: "politics", PAEDRIP: "paedrip", HATE: "hate"}
