"""text_chunking on real documents (no model): neural-search's chunk boundaries and limits."""

import pytest

from processors import IngestDocument, IngestPipeline

pytestmark = pytest.mark.unit


async def run(algorithm, source, **extra):
    body = {"processors": [{"text_chunking": {"field_map": {"body": "chunks"}, "algorithm": algorithm, **extra}}]}
    (doc,) = await IngestPipeline.from_body("c", body, ml=None).run([IngestDocument("i", "1", source)])
    return doc


async def test_delimiter_keeps_delimiter_at_chunk_end():
    doc = await run({"delimiter": {}}, {"body": "one.\n\ntwo.\n\nthree"})
    assert doc.source["chunks"] == ["one.\n\n", "two.\n\n", "three"]


async def test_fixed_token_length_with_overlap():
    text = "w1 w2 w3 w4 w5 w6 w7"
    doc = await run({"fixed_token_length": {"token_limit": 3, "overlap_rate": 0.34, "tokenizer": "whitespace"}},
                    {"body": text})
    # overlap floor(3 * 0.34) = 1 token: windows start at tokens 0, 2, 4; the last runs to the end
    assert doc.source["chunks"] == ["w1 w2 w3 ", "w3 w4 w5 ", "w5 w6 w7"]


async def test_standard_tokenizer_keeps_inner_punctuation_and_gaps():
    doc = await run({"fixed_token_length": {"token_limit": 2}}, {"body": "Don't stop, e.g. now!"})
    assert doc.source["chunks"] == ["Don't stop, ", "e.g. now!"]


async def test_max_chunk_limit_puts_the_rest_in_the_last_chunk():
    doc = await run({"fixed_char_length": {"char_limit": 2, "max_chunk_limit": 2}}, {"body": "abcdefg"})
    assert doc.source["chunks"] == ["ab", "cdefg"]
    doc = await run({"fixed_char_length": {"char_limit": 2, "max_chunk_limit": -1}}, {"body": "abcdefg"})
    assert doc.source["chunks"] == ["ab", "cd", "ef", "g"]


async def test_max_chunk_limit_counts_across_list_values():
    doc = await run({"delimiter": {"delimiter": ".", "max_chunk_limit": 3}}, {"body": ["a.b.c.", "d.e."]})
    # one chunk is reserved for the second string: the first yields 2, the second what is left (1)
    assert doc.source["chunks"] == ["a.", "b.c.", "d.e."]


async def test_missing_field_gives_empty_list_unless_ignore_missing():
    doc = await run({"delimiter": {}}, {"other": 1})
    assert doc.source["chunks"] == []
    doc = await run({"delimiter": {}}, {"other": 1}, ignore_missing=True)
    assert "chunks" not in doc.source


async def test_nested_field_map_chunks_each_object():
    body = {"processors": [{"text_chunking": {"field_map": {"sections": {"text": "passages"}},
                                              "algorithm": {"delimiter": {"delimiter": "|"}}}}]}
    src = {"sections": [{"text": "a|b"}, {"text": "c"}]}
    (doc,) = await IngestPipeline.from_body("c", body, ml=None).run([IngestDocument("i", "1", src)])
    assert doc.source["sections"] == [{"text": "a|b", "passages": ["a|", "b"]}, {"text": "c", "passages": ["c"]}]


def test_standard_tokenizer_word_boundaries():
    from processors.chunkers import TOKENIZERS

    text = "Don't stop, e.g. now! 1,000 wi-fi 東京タワー U.S.A. a_b"
    assert TOKENIZERS["standard"].findall(text) == [
        "Don't", "stop", "e.g", "now", "1,000", "wi", "fi", "東", "京", "タワー", "U.S.A", "a_b"]
    assert TOKENIZERS["whitespace"].findall("a-b  c,d") == ["a-b", "c,d"]
    assert TOKENIZERS["letter"].findall("ab1cd e_f") == ["ab", "cd", "e", "f"]
