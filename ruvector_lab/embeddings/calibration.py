"""Texts the int8 build is calibrated on, pinned in code so a build never depends on a data set being installed.

They only set the per-channel activation ranges that SmoothQuant balances (:mod:`.smoothing`), so what matters is
their spread: short and long, plain and technical, several scripts, punctuation, numbers. None of them is a text
the tests judge the int8 model on (tests/fixtures/minilm_reference.json): a recipe tuned on its own judge would
hide its error.
"""

from __future__ import annotations

CALIBRATION_TEXTS: tuple[str, ...] = (
    "A dog runs across the park in the morning.",
    "Stock markets fell sharply after the central bank raised interest rates by half a point.",
    "the process by which green plants convert light energy into chemical energy stored in glucose",
    "How do I reset my password?",
    "In 1905 Einstein published four papers that changed physics: on the photoelectric effect, Brownian motion, "
    "special relativity and the equivalence of mass and energy.",
    "a small wooden boat",
    "She said she would come back tomorrow, but nobody believed her.",
    "Vector databases index embeddings for fast similarity search.",
    "any of various plants of the genus Rosa having prickly stems and fragrant flowers",
    "The committee will review the proposal next week and publish its findings in the spring.",
    "error: could not open file /tmp/data.csv (permission denied)",
    "Je pense, donc je suis.",
    "1, 2, 3, 4, 5 and so on up to one hundred",
    "The recipe calls for two cups of flour, one egg, a pinch of salt and a cup of warm milk, mixed until smooth.",
    "Der Zug nach Berlin hat zwanzig Minuten Verspätung.",
    "resistance to change; an unwillingness to adopt new ideas or methods",
    "What is the capital of Australia, and why is it not Sydney?",
    "ok",
    "The patient reported mild headaches, occasional dizziness and trouble sleeping over the past three weeks; the "
    "doctor ordered blood tests, advised rest and scheduled a follow-up visit for the end of the month.",
    "北京是中国的首都。",
    "def add(a, b): return a + b",
    "Breaking: heavy snow closes schools across the region!!!",
    "the quality of being honest and having strong moral principles",
    "Our quarterly revenue grew 12% year over year, driven by subscriptions in Europe and Asia, while operating "
    "costs stayed flat; we expect margins to improve further as the new data centre comes online next year, "
    "although currency movements remain a risk for the second half.",
)
