"""The sentence-transformers input module of the embedded ethics encoder.

Its own module because it imports sentence-transformers at the top; `morphemes.py` stays light.
A saved model names it in modules.json as
`ohlora_assets.core.ethics.morpheme_transformer.MorphemeTransformer`, so it loads with
`SentenceTransformer(path, trust_remote_code=True)` wherever this package is installed.
"""

from __future__ import annotations

from sentence_transformers import models

from ohlora_assets.core.ethics.morphemes import to_morphemes


class MorphemeTransformer(models.Transformer):
    """A Transformer input module whose text inputs are analysed into morphemes first
    (`Morphemes`, already analysed, pass through untouched)."""

    def preprocess(self, inputs, prompt=None, **kwargs):
        return super().preprocess([to_morphemes(x) if isinstance(x, str) else x for x in inputs], prompt, **kwargs)
