"""Index terms of a text: Unicode words, lower-cased, normalised, stop words removed, Snowball stemmed.

Each word is stemmed by the rules of its language, chosen in two steps:

* **Script.** A word's script names its language where one script serves one stemmer: Arabic
  script (Persian when the text uses letters only Persian has), Armenian, Cyrillic (Russian;
  Serbian when the text uses letters only Serbian has), Devanagari (Hindi; Nepali when the
  text's function words are Nepali ones), Greek, Hebrew (Yiddish when the text's function words
  are Yiddish ones, else unstemmed: Snowball has no Hebrew), Tamil. Words of other scripts
  (Chinese, Japanese, Thai …) are folded and kept whole.
* **Text.** A Latin-script word alone does not tell its language, so the text does: the Latin
  language whose stop words the text uses most (more than English ones, two different ones at
  least, and more than any other language) is the text's language. Its words are indexed twice, under the English stem (what every Latin word
  gets) and under their own language's stem where that differs. A short question names no
  function words and is then read as English: its English stems still meet the document's, so a
  question and its document, analysed apart, always share the English terms, and the
  language-specific ones add the inflections English rules miss ("maisons" / "maison" meet
  either way, "chevaux" / "cheval" only under French rules). Text read as English gets exactly the
  terms it got before languages were told apart. Indexing only the language's own stems loses
  exactly those short questions (measured in docs/evaluation.md, "Languages").

Normalisation: accents are folded on Latin and Greek words (café = cafe; the English stemmer sees
the folded word, other languages' stemmers the word as written, then the stem is folded) but not
on Cyrillic ones, where "й" is a letter of its own, not an accented "и"; Arabic loses its
diacritics and tatweel, and its alef, yeh and teh marbuta variants are unified (أ إ آ ٱ → ا,
ى → ي, as is usual for Arabic retrieval; teh marbuta and heh meet on the stem: a final ه is read
as ة before stemming, since Snowball strips ة but keeps ه, and ة → ه after); "و" and "ف" before
the article are cut off, which Snowball leaves on.

BM25 (``app.retrieval.bm25``), query expansion and the extractive answerer all count terms this
one way.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable

import Stemmer

__all__ = ["detect_language", "terms"]

# A word is letters and digits with the combining marks between them: Python's \w leaves out the
# vowel signs of Devanagari and Tamil and the Arabic and Hebrew points, and would cut words there.
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed"
    "\u0900-\u0903\u093a-\u094f\u0951-\u0957\u0962\u0963\u0b82\u0bbe-\u0bcd\u0bd7"
)
_WORD_RE = re.compile(rf"\w[\w{_MARKS}]*", re.UNICODE)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# A compact English stop-word list (the usual BM25 baselines use one of this size).
_STOP_WORDS = _words(
    """a about above after again against all am an and any are aren't as at be because been before
    being below between both but by can cannot could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just let me more most my myself no nor not of off on once only or other ought our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves s t"""
)

# Compact function-word lists per Latin-script language, accents folded (they are compared with
# folded words). They remove the words that carry no topic and, by how many of them a text uses,
# tell the text's language.
_LATIN_STOP_WORDS: dict[str, frozenset[str]] = {
    "french": _words(
        """au aux avec ce ces cet cette comment dans de des du elle elles en est et etre eux il ils
        je la le les leur leurs lui ma mais me mes moi mon ne nos notre nous ou par pas peut plus
        pour quand que quel quelle quels qui sa sans se ses son sont sur ta te tes toi ton tu un une
        vos votre vous y ai avez avons doit faut entre aussi tres tout tous"""
    ),
    "spanish": _words(
        """al algo como con cual cuales cuando de del desde donde el ella ellas ellos en entre era es
        esa ese eso esta este esto estos estas fue ha hay la las le les lo los mas me mi mis muy nos
        nuestra nuestro o para pero por que quien se ser si sin sobre son su sus tambien te tiene
        tu un una unos uno y ya puedo puede hacer debo cuanto cuantos cuantas"""
    ),
    "portuguese": _words(
        """ao aos as com como da das de dela dele do dos e ela ele eles em entre era essa esse esta
        este eu foi ha isso isto ja lhe mais mas me meu minha muito na nao nas nem no nos o os ou
        para pela pelo por qual quando que quem se sem seu sua suas sao tambem te tem um uma voce
        posso pode fazer"""
    ),
    "italian": _words(
        """al alla alle agli ai anche che chi ci come con cui da dal dalla dei del della delle di
        dove e gli ha hanno il in io la le lei lo loro lui ma mi mio nel nella nelle noi non o per
        perche piu quale quando questa questo se si sono su sua suo tra tu un una uno voi posso"""
    ),
    "german": _words(
        """aber als am an auch auf aus bei bin bis bist das dass dem den der des die dies diese
        dieser du durch ein eine einem einen einer es fur hat ich ihr im in ist ja kann man mit
        nach nicht noch nur oder sein sich sie sind so und uns unter von vor war was wie wir wird
        wo zu zum zur uber muss wann welche welcher wer"""
    ),
    "dutch": _words(
        """aan al als bij dan dat de deze die dit door een en er geen het hij hoe ik in is je kan
        maar met mij naar niet nog of om ons ook op over te tot uit van voor was wat we wij worden
        zijn ze zich zo"""
    ),
    "danish": _words(
        """af alle at blev da de den der det dig du efter eller en er et for fra har hun hvad
        hvor hvis ikke jeg kan man med mig min ned og om op os paa sig som til var vi vil"""
    ),
    "norwegian": _words(
        """av at da de den der det du eller en er et for fra har hun hva hvor ikke jeg kan man med
        meg min og om opp oss paa seg som til var vi vil ble hvordan"""
    ),
    "swedish": _words(
        """att av de den det du efter eller en ett for fran har hon hur i inte jag kan man med mig
        min och om pa sig som till var vi vid vad"""
    ),
    "finnish": _words(
        """ei en ja jos kuin kun me mika miten mutta ne niin nyt olen oli olla on ovat se sen siina
        sita tai tama taman te vai voi voin"""
    ),
    "hungarian": _words(
        """az egy es hogy nem is meg de ha mint mar csak van volt lesz ez azt ami aki kell vagy
        nagyon hol hogyan mikor miert"""
    ),
    "romanian": _words(
        """al ale ca care cu de din este fi la mai nu pe pentru sa se si sunt un una unei unui iar
        sau cum ce cand unde"""
    ),
    "turkish": _words(
        """ama bir bu da de daha gibi icin ile ise mi mu ne nasil neden o olan olarak sonra ve veya
        ya bunu cok kadar"""
    ),
    "indonesian": _words(
        """ada adalah akan apa bagaimana bahwa dalam dan dari dengan di ini itu juga ke kami
        karena oleh pada saya tidak untuk yang bisa sudah"""
    ),
    "catalan": _words(
        """amb als aquest aquesta com del dels els en es fins i la les no per pero que qui quan
        seu seva son tambe una uns"""
    ),
    "basque": _words("""bat baina da dira du dute eta ez ere hau hori zer zein nola non ni zu gu"""),
    "irish": _words("""agus an ar ata ba bhi cad conas da de do go i is le leis na nach ni no se si ta"""),
    "lithuanian": _words(
        """apie ar bet buvo butu ir is ja jis jie jos kad kaip kas kur man mes ne nuo tai yra su uz"""
    ),
    "czech": _words(
        """a aby ale ani bude byl byla co do jak jako je jsem jsou k kde kdyz ma na nebo neni od po pro se si tak to v ve z za ze"""
    ),
    "polish": _words(
        """aby ale bo byl byla czy dla do gdzie i jak jest jego jej juz ktora ktory na nie od po przez sie tak to w z za ze"""
    ),
    "estonian": _words("""ei et ja kas kes kui kuidas kus mida mis nii oli on ka see seda ta nad ning"""),
}
# What counts towards a language: its function words that are not English ones, so an English
# text never scores for another language by sharing "in", "a" or "die" with it.
_PROFILE: dict[str, tuple[str, ...]] = {}
for _language, _stop in _LATIN_STOP_WORDS.items():
    for _word in _stop - _STOP_WORDS:
        _PROFILE[_word] = (*_PROFILE.get(_word, ()), _language)

# The same for Russian: function words that carry no topic ("как", "для", "ли").
_RUSSIAN_STOP_WORDS = _words(
    """а без более бы был была были было быть в вам вас весь во вот все всё всего всех вы где да даже
    для до его ее её если есть еще ещё же за здесь и из или им их к как ко когда кто ли либо мне
    может мы на над надо наш не него нее неё нет ни них но ну о об однако он она они оно от очень по
    под при с со так также такой там те тем то того тоже той только том ты у уже хотя чего чей чем
    что чтобы чье чья эта эти это этого этой этом этот я"""
)
_SERBIAN_STOP_WORDS = _words("""и у је да се на за од са као не су то или али из по ће би што""")
# Greek, accents folded as Greek words are.
_GREEK_STOP_WORDS = _words(
    """και το η ο οι τα του της των την τον να με σε για απο που ειναι στο στη στην στον στα δεν θα
    ως ή αν ενα μια πως τι ποιος ποια ποιο"""
)
# Arabic, normalised as Arabic words are (no diacritics, bare alef, yeh for alef maqsura).
_ARABIC_STOP_WORDS = _words(
    """في من علي الي عن مع هذا هذه ذلك تلك التي الذي الذين هو هي هم انا نحن انت كان كانت يكون
    ان او ثم لا لم لن ما ماذا متي اين كيف هل كل بعد قبل عند بين حتي قد اذا لكن منذ او غير ايضا
    به بها له لها فيه فيها منه منها عليه عليها اي و ف ب ل ك"""
)
_PERSIAN_STOP_WORDS = _words(
    """و در به از که این آن را با است برای تا یا هم یک می شود بر کرد نیز هر چه چگونه کجا"""
)
_HINDI_STOP_WORDS = _words("""का की के को में से है हैं और पर यह वह था थी थे भी तो ही कि एक लिए या कैसे क्या कब कहाँ""")
_NEPALI_STOP_WORDS = _words("""र को का की मा छ छन् हो पनि यो त्यो गर्न हुन्छ भएको लागि कसरी के कहाँ""")
_NEPALI_PROFILE = _NEPALI_STOP_WORDS - _HINDI_STOP_WORDS
_TAMIL_STOP_WORDS = _words("""ஒரு மற்றும் இந்த அந்த என்று இது அது என்ன எப்படி எங்கே உள்ள""")
_ARMENIAN_STOP_WORDS = _words("""և է են եմ ու որ այս այդ այն մի են իր ինչ ինչպես որտեղ համար հետ""")
_YIDDISH_PROFILE = _words("""איז און דער די דאס פון מיט ניט נישט אויף צו ער זי מען""")

_ENGLISH = "english"

# Script blocks -> script name, for the first letter of a word.
_LATIN, _CYRILLIC, _GREEK, _ARABIC = "latin", "cyrillic", "greek", "arabic"
_ARMENIAN, _HEBREW, _DEVANAGARI, _TAMIL = "armenian", "hebrew", "devanagari", "tamil"
_BLOCKS: tuple[tuple[int, int, str], ...] = (
    (0x0370, 0x0400, _GREEK),
    (0x0400, 0x0530, _CYRILLIC),
    (0x0530, 0x0590, _ARMENIAN),
    (0x0590, 0x0600, _HEBREW),
    (0x0600, 0x0700, _ARABIC),
    (0x0750, 0x0780, _ARABIC),
    (0x0900, 0x0980, _DEVANAGARI),
    (0x0B80, 0x0C00, _TAMIL),
    (0x1C80, 0x1C90, _CYRILLIC),
    (0x1E00, 0x1F00, _LATIN),
    (0x1F00, 0x2000, _GREEK),
    (0x08A0, 0x0900, _ARABIC),
    (0xFB1D, 0xFB50, _HEBREW),
    (0xFB50, 0xFE00, _ARABIC),
    (0xFE70, 0xFF00, _ARABIC),
)


def _script(word: str) -> str:
    """The script of ``word``'s first letter."""
    for ch in word:
        code = ord(ch)
        if code < 0x370:
            return _LATIN
        for low, high, script in _BLOCKS:
            if low <= code < high:
                return script
        if ch.isalpha():
            return _LATIN  # other scripts: folded and kept whole, as Latin words the stemmer leaves be
    return _LATIN


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_ARABIC_LETTERS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي"})
_PERSIAN_LETTERS = str.maketrans({"أ": "ا", "إ": "ا", "ٱ": "ا", "ي": "ی", "ى": "ی", "ك": "ک"})
_PERSIAN_ONLY = frozenset("پچژگکی")
_SERBIAN_ONLY = frozenset("ђјљњћџ")


def detect_language(words: Iterable[str]) -> str:
    """The language of a text's Latin-script ``words`` (lower-cased): the one whose function words
    it uses most, if more than English ones and two different ones at least, and no other language
    as many; else English."""
    words = [word if word.isascii() else _fold(word) for word in words]
    candidates = [word for word in words if word in _PROFILE]  # one pass in C for English text
    if len(set(candidates)) < 2:
        return _ENGLISH
    counts: Counter[str] = Counter()
    distinct: dict[str, set[str]] = {}
    for word in candidates:
        for language in _PROFILE[word]:
            counts[language] += 1
            distinct.setdefault(language, set()).add(word)
    english = sum(word in _STOP_WORDS for word in words)
    ranked = counts.most_common(2)
    language, hits = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == hits:
        return _ENGLISH  # "de la" is French as much as Spanish: the English stems serve both
    # Two different function words at least: "de Gaulle" or "au pair" in English text is not French.
    return language if len(distinct[language]) >= 2 and hits > english else _ENGLISH


class _Stemmers:
    """One Snowball stemmer per language. PyStemmer objects are not thread-safe, so each thread
    gets its own (ingestion encodes on one thread while the retrieval worker encodes queries)."""

    _local = threading.local()

    @classmethod
    def get(cls, language: str) -> Stemmer.Stemmer:
        stemmers: dict[str, Stemmer.Stemmer] | None = getattr(cls._local, "stemmers", None)
        if stemmers is None:
            stemmers = cls._local.stemmers = {}
        if language not in stemmers:
            stemmers[language] = Stemmer.Stemmer(language)
        return stemmers[language]


class _Text:
    """The per-text choices: the Latin language, and the languages of the ambiguous scripts."""

    def __init__(self, words: list[str]) -> None:
        self.latin = detect_language(w for w in words if w.isascii() or _script(w) == _LATIN)
        self.latin_stop = _LATIN_STOP_WORDS.get(self.latin, frozenset())
        letters = set("".join(w for w in words if not w.isascii()))
        self.persian = not _PERSIAN_ONLY.isdisjoint(letters)
        self.serbian = not _SERBIAN_ONLY.isdisjoint(letters)
        self.nepali = sum(w in _NEPALI_PROFILE for w in words) >= 2
        self.yiddish = sum(w in _YIDDISH_PROFILE for w in words) >= 2 or not set("װױײ").isdisjoint(letters)


def _latin_terms(word: str, text: _Text, out: list[str]) -> None:
    folded = _fold(word)
    if folded in _STOP_WORDS or (len(folded) == 1 and folded.isascii()) or folded in text.latin_stop:
        return
    english = _Stemmers.get(_ENGLISH).stemWord(folded)
    out.append(english)
    if text.latin != _ENGLISH:
        own = _fold(_Stemmers.get(text.latin).stemWord(word))
        if own != english:
            out.append(own)


def _arabic_terms(word: str, text: _Text, out: list[str]) -> None:
    word = _ARABIC_MARKS.sub("", word)
    if text.persian:
        word = word.translate(_PERSIAN_LETTERS)
        if word and word not in _PERSIAN_STOP_WORDS:
            out.append(_Stemmers.get("persian").stemWord(word))
        return
    word = word.translate(_ARABIC_LETTERS)
    if len(word) < 2 or word in _ARABIC_STOP_WORDS:
        return
    if len(word) > 4 and word[0] in "وف" and word[1:3] == "ال":  # "and the" / "so the": Snowball keeps it
        word = word[1:]
    if word.endswith("ه"):  # teh marbuta is often typed without its dots: read it as one
        word = word[:-1] + "ة"
    out.append(_Stemmers.get("arabic").stemWord(word).replace("ة", "ه"))


def _other_terms(word: str, script: str, text: _Text, out: list[str]) -> None:
    """Words of the scripts that name their language (Arabic script apart)."""
    language: str | None
    if script == _CYRILLIC:
        word = word.replace("ё", "е")
        language = "serbian" if text.serbian else "russian"
        stop = _SERBIAN_STOP_WORDS if text.serbian else _RUSSIAN_STOP_WORDS
        if word in stop or len(word) == 1:
            return
    elif script == _GREEK:
        word, language = _fold(word), "greek"
        if word in _GREEK_STOP_WORDS:
            return
    elif script == _DEVANAGARI:
        language = "nepali" if text.nepali else "hindi"
        if word in (_NEPALI_STOP_WORDS if text.nepali else _HINDI_STOP_WORDS):
            return
    elif script == _TAMIL:
        language = "tamil"
        if word in _TAMIL_STOP_WORDS:
            return
    elif script == _ARMENIAN:
        language = "armenian"
        if word in _ARMENIAN_STOP_WORDS:
            return
    else:  # Hebrew script: points folded away like accents
        word, language = _fold(word), "yiddish" if text.yiddish else None
        if word in _YIDDISH_PROFILE:
            return
    out.append(_Stemmers.get(language).stemWord(word) if language else word)


def terms(text: str) -> list[str]:
    """The index terms of ``text``, in order, stop words removed."""
    words = _WORD_RE.findall(text.lower())
    if all(word.isascii() for word in words):
        language = detect_language(words)
        if language == _ENGLISH:  # the common case, in one C call
            kept = [w for w in words if len(w) > 1 and w not in _STOP_WORDS]
            stemmed: list[str] = _Stemmers.get(_ENGLISH).stemWords(kept)
            return stemmed
    analysis = _Text(words)
    out: list[str] = []
    for word in words:
        script = _script(word)
        if script == _LATIN:
            _latin_terms(word, analysis, out)
        elif script == _ARABIC:
            _arabic_terms(word, analysis, out)
        else:
            _other_terms(word, script, analysis, out)
    return out
