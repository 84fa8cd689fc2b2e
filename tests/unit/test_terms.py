"""Index terms per language: script detection, the Latin-script text's language, normalisation,
stop words, and English left exactly as it was."""

from __future__ import annotations

import threading

import pytest
import Stemmer

from app.text.terms import detect_language, terms

pytestmark = pytest.mark.unit


# Pinned before languages were told apart: English text must keep these exact terms, or every
# English store would be re-ranked by the upgrade.
ENGLISH_PINNED = {
    "How do I configure the VPN client on a company laptop?": [
        "configur",
        "vpn",
        "client",
        "compani",
        "laptop",
    ],
    "Error E6305: the deployment failed because the certificate has expired.": [
        "error",
        "e6305",
        "deploy",
        "fail",
        "certif",
        "expir",
    ],
    "Running servers were restarted twice during the night's maintenance window": [
        "run",
        "server",
        "restart",
        "twice",
        "night",
        "mainten",
        "window",
    ],
    "Café owners' naïve résumé policies": ["cafe", "owner", "naiv", "resum", "polici"],
    "What is the capital of France and how many people live there": [
        "capit",
        "franc",
        "mani",
        "peopl",
        "live",
    ],
}


@pytest.mark.parametrize("sentence", ENGLISH_PINNED)
def test_english_terms_are_unchanged(sentence: str) -> None:
    assert terms(sentence) == ENGLISH_PINNED[sentence]


def test_a_few_foreign_words_in_english_text_do_not_make_it_foreign() -> None:
    assert detect_language("charles de gaulle airport in paris".split()) == "english"
    assert detect_language("au pair au lait".split()) == "english"
    assert terms("Charles de Gaulle airport") == ["charl", "de", "gaull", "airport"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("les maisons de la ville sont belles", "french"),
        ("las casas de la ciudad son grandes", "spanish"),
        ("wie beantrage ich den urlaub", "german"),
        ("as casas da cidade não são caras", "portuguese"),
        ("le case della città sono grandi", "italian"),
        ("hoe vraag ik een dag vrij aan", "dutch"),
        ("how do I request a day off", "english"),
        ("maisons", "english"),  # no function word: nothing tells the language
    ],
)
def test_a_latin_texts_language_comes_from_its_function_words(text: str, language: str) -> None:
    assert detect_language(text.split()) == language


def test_french_inflections_meet() -> None:
    assert set(terms("les maisons de la ville sont belles")) & set(terms("une maison"))
    # Inflections that English rules leave apart meet under French ones.
    assert terms("chevaux") != terms("cheval")
    assert set(terms("les chevaux de la ferme sont dehors")) & set(terms("le cheval est dans la ferme"))


def test_spanish_inflections_meet() -> None:
    assert set(terms("las casas de la ciudad son grandes")) & set(terms("una casa"))
    assert terms("pedimos") != terms("pedir")
    assert set(terms("pedimos las vacaciones en el portal")) & set(terms("para pedir el permiso"))


def test_a_short_question_without_function_words_still_meets_its_foreign_document() -> None:
    # The question reads as English, the document as Spanish: they share the English stems.
    document = set(terms("Las vacaciones pueden dividirse en varios periodos para los empleados"))
    assert detect_language(["vacaciones", "periodos"]) == "english"
    assert set(terms("vacaciones periodos")) <= document


def test_text_whose_function_words_fit_two_languages_alike_is_read_as_english() -> None:
    # "les", "de", "la" are Spanish words too: nothing here tells French from Spanish.
    assert detect_language("les maisons de la ville".split()) == "english"


def test_foreign_stop_words_are_dropped_in_their_language() -> None:
    assert terms("les maisons de la ville sont belles")[:2] == ["maison", "vill"]
    assert not {"las", "de", "la", "son"} & set(terms("las casas de la ciudad son grandes"))


@pytest.mark.parametrize(
    ("forms", "why"),
    [
        (
            ["الإجازة", "إجازة", "اجازة", "والإجازة", "بالإجازة"],
            "article, conjunction, preposition, hamza on alef",
        ),
        (["المدرسة", "مدرسة", "وبالمدرسة", "للمدرسة"], "prefixes"),
        (["الكتاب", "كتاب", "وكتابه"], "pronoun suffix"),
        (["أحمد", "احمد", "إحمد"], "alef variants"),
        (["مُدَرِّسَة", "مدرسة", "مدرســة"], "diacritics and tatweel"),
        (["مستشفى", "مستشفي"], "alef maqsura spelt as yeh"),
    ],
)
def test_arabic_forms_and_spellings_meet(forms: list[str], why: str) -> None:
    assert len({term for form in forms for term in terms(form)}) == 1, why


def test_teh_marbuta_spelt_as_heh_meets() -> None:
    assert terms("الاجازه السنويه") == terms("الإجازة السنوية")


def test_arabic_stop_words_are_dropped() -> None:
    assert terms("كيف أطلب الإجازة في الشركة") == terms("أطلب الإجازة الشركة")
    assert terms("في من على") == []


@pytest.mark.parametrize(
    ("word", "stemmed_by"),
    [
        ("отпусками", "russian"),
        ("ελλάδα", "greek"),
        ("կիրառություններ", "armenian"),
        ("किताबें", "hindi"),
        ("புத்தகங்கள்", "tamil"),
    ],
)
def test_a_words_script_chooses_its_stemmer(word: str, stemmed_by: str) -> None:
    expected = Stemmer.Stemmer(stemmed_by).stemWord(word if stemmed_by != "greek" else "ελλαδα")
    assert terms(word) == [expected]


def test_persian_text_gets_the_persian_stemmer_and_letters() -> None:
    # "ی" and "ک" are Persian letters: the text is Persian, and Arabic-keyboard spellings meet.
    assert terms("کتابها") == terms("كتابها و کتاب")[:1]


def test_mixed_scripts_are_each_stemmed_by_their_own_rules() -> None:
    mixed = terms("Servers отпусками الإجازات")
    assert mixed == [terms("servers")[0], terms("отпуск")[0], terms("إجازة")[0]]


def test_words_of_scripts_without_a_stemmer_are_kept() -> None:
    assert terms("東京 タワー") == ["東京", "タワー"]
    assert terms("שלום עולם") == ["שלום", "עולם"]


def test_stemming_is_safe_across_threads() -> None:
    # PyStemmer objects are not thread-safe; each thread keeps its own.
    texts = [
        "les maisons de la ville",
        "las casas de la ciudad",
        "الإجازات السنوية",
        "отпусками",
        "running servers",
    ]
    expected = [terms(text) for text in texts]
    failures: list[str] = []

    def work() -> None:
        for _ in range(200):
            for text, want in zip(texts, expected, strict=True):
                if terms(text) != want:
                    failures.append(text)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
