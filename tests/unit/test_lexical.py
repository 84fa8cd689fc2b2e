"""BM25 sparse vectors for Qdrant's IDF modifier."""

from __future__ import annotations

import pytest

from app.retrieval.bm25 import LexicalEncoder
from app.text.terms import terms

pytestmark = pytest.mark.unit


def test_terms_are_folded_stemmed_and_stop_words_removed() -> None:
    assert terms("The Running of the Servers") == ["run", "server"]
    assert terms("Café crème") == terms("cafe creme")


def test_non_latin_words_survive_as_terms() -> None:
    assert terms("Привет мир") == ["привет", "мир"]


def test_russian_words_are_stemmed_so_inflected_forms_match() -> None:
    # Nominative, genitive and instrumental of "leave": one term, as a Russian reader expects.
    assert len({*terms("отпуск"), *terms("отпуска"), *terms("отпуском")}) == 1
    assert terms("оформить больничный") == terms("Оформить больничного")


def test_russian_stop_words_are_dropped_and_yo_is_spelled_as_ye() -> None:
    assert terms("как и где оформить") == terms("оформить")
    assert terms("счёт") == terms("счет")


def test_cyrillic_short_i_is_a_letter_not_an_accent() -> None:
    # Folding "й" to "и" (as NFKD does for accents) would index "район" (district) as "раион".
    assert terms("районы") == ["район"]


def test_each_word_is_stemmed_by_the_rules_of_its_script() -> None:
    mixed = terms("Servers отпусками Ελλάδα")
    assert mixed[0] == "server"
    assert mixed[1] == terms("отпуск")[0]
    assert mixed[2] == terms("ελλαδα")[0]  # Greek accents fold like Latin ones


def test_document_weights_saturate_with_term_frequency() -> None:
    encoder = LexicalEncoder()
    once = encoder.encode_document("qdrant")
    many = encoder.encode_document("qdrant " * 10)
    assert once.indices == many.indices
    assert many.values[0] > once.values[0]
    assert many.values[0] < encoder.k1 + 1  # BM25's tf part never exceeds k1 + 1


def test_query_gives_each_distinct_term_weight_one() -> None:
    query = LexicalEncoder().encode_query("install install linux")
    assert len(query) == 2
    assert query.values == [1.0, 1.0]


def test_matching_terms_share_indices_between_query_and_document() -> None:
    encoder = LexicalEncoder()
    doc = encoder.encode_document("How to install the service on Linux")
    query = encoder.encode_query("linux installation")
    assert set(query.indices) <= set(doc.indices)


def test_text_without_terms_gives_an_empty_vector() -> None:
    assert len(LexicalEncoder().encode_document("the of and")) == 0


def test_a_short_spanish_question_shares_indices_with_its_spanish_document() -> None:
    # The question names no function word (read as English), the document is read as Spanish.
    encoder = LexicalEncoder()
    doc = encoder.encode_document("Las solicitudes de vacaciones se presentan en el portal de los empleados")
    query = encoder.encode_query("solicitud vacaciones portal")
    assert set(query.indices) <= set(doc.indices)


def test_an_arabic_question_shares_indices_with_its_document_across_prefixes_and_spellings() -> None:
    encoder = LexicalEncoder()
    doc = encoder.encode_document("يقدم طلب الإجازة السنوية عبر بوابة الموارد البشرية")
    query = encoder.encode_query("كيف أطلب اجازه سنويه")
    assert set(query.indices) & set(doc.indices) == set(encoder.encode_query("الإجازة السنوية").indices)
