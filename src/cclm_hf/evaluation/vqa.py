"""VQA v2 accuracy with the answer normalisation of the official evaluation (`vqaEval.py` of the VQA API).

The rules, reproduced as the official script applies them:

- the predicted answer: newlines / tabs -> spaces, stripped, then punctuation handling and digit / article handling;
- the human answers: punctuation handling only, and only when the annotators disagree (more than one distinct
  answer); their digits and articles are left as stored (the annotations are already normalised that way);
- punctuation handling: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted when it touches a space or
  the text contains a digit-comma-digit group, otherwise replaced by a space; then up to 32 periods not next to a
  digit are deleted (the script passes `re.UNICODE`, whose value is 32, as the `count` of `re.sub`);
- digit / article handling: lower-cased words, number words "none", "zero" ... "ten" -> digits, articles "a", "an",
  "the" dropped, contractions restored ("dont" -> "don't");
- accuracy of one question: the mean over the annotators of `min(1, #other annotators who gave the answer / 3)`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


__all__ = ["normalize_answer_digits_articles", "normalize_answer_punctuation", "vqa_accuracy"]

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = ("a", "an", "the")
_PUNCTUATION = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
# A lookahead and a (mistyped, so never matching) lookbehind: any period not followed by a digit.
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
_PERIOD_SUB_COUNT = int(re.UNICODE)  # 32: what the official script passes as `count`
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip


def normalize_answer_punctuation(text: str) -> str:
    """The official `processPunctuation`."""
    output = text
    strip_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in _PUNCTUATION:
        if strip_all or mark + " " in text or " " + mark in text:
            output = output.replace(mark, "")
        else:
            output = output.replace(mark, " ")
    return _PERIOD.sub("", output, count=_PERIOD_SUB_COUNT)


def normalize_answer_digits_articles(text: str) -> str:
    """The official `processDigitArticle`."""
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES]
    return " ".join(words)


def vqa_accuracy(prediction: str, annotator_answers: Sequence[str]) -> float:
    """Accuracy of one predicted answer against the annotators' answers (usually 10), in [0, 1]."""
    if not annotator_answers:
        raise ValueError("VQA accuracy needs at least one annotator answer")
    answer = prediction.replace("\n", " ").replace("\t", " ").strip()
    answer = normalize_answer_digits_articles(normalize_answer_punctuation(answer))
    truths = list(annotator_answers)
    if len(set(truths)) > 1:
        truths = [normalize_answer_punctuation(truth) for truth in truths]
    scores = []
    for index in range(len(truths)):
        matches = sum(truth == answer for other, truth in enumerate(truths) if other != index)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)
