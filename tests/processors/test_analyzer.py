"""neural_sparse ``analyzer``: query_text tokenized by a DL model analyzer (bert-uncased by default) with its weights;
checked against transformers' bert-base-uncased tokenizer from the same offline folder."""

import json
import shutil

import pytest

from opensearch_contract.errors import IllegalArgument
from processors import analyzers
from processors.query import rewrite

from .fakes import RecordingML

pytestmark = pytest.mark.unit

TEXT = "It's fun to contribute to OpenSearch! Neural sparse retrieval, unbelievably efficient."


@pytest.fixture(autouse=True)
def fresh_analyzers(monkeypatch):
    monkeypatch.delenv(analyzers.ANALYSIS_DIR_ENV, raising=False)
    analyzers.get_analyzer.cache_clear()
    yield
    analyzers.get_analyzer.cache_clear()


def _wordpieces(text):
    from transformers import BertTokenizerFast  # the independent reference, loaded only by these tests

    folder = analyzers._offline_bert_dir()
    return BertTokenizerFast.from_pretrained(str(folder)).tokenize(text)


def _tokens(query):
    should = query["bool"]["should"]
    return {c["rank_feature"]["field"].split(".", 1)[1]: c["rank_feature"]["boost"] for c in should}


@pytest.mark.parametrize("params", [{}, {"analyzer": "bert-uncased"}])
async def test_bert_uncased_is_the_default_and_needs_no_model(params):
    ml = RecordingML()
    out = (await rewrite({"neural_sparse": {"sp": {"query_text": TEXT, **params}}}, ml=ml)).query
    assert ml.calls == []
    # no idf.json ships offline: every token weighs 1.0, as the analyzer weighs a token its weights file lacks
    assert _tokens(out) == {t: 1.0 for t in _wordpieces(TEXT) if "." not in t}
    assert "un" in _tokens(out) and "##bel" in _tokens(out)  # WordPiece pieces, lower-cased


async def test_weights_come_from_the_analyzers_idf_json(tmp_path, monkeypatch):
    folder = tmp_path / "bert-uncased"
    folder.mkdir()
    shutil.copy(analyzers._offline_bert_dir() / "tokenizer.json", folder / "tokenizer.json")
    (folder / "idf.json").write_text(json.dumps({"fun": 2.5, "sparse": 4.0, "to": 0.0}), encoding="utf-8")
    monkeypatch.setenv(analyzers.ANALYSIS_DIR_ENV, str(tmp_path))
    out = (await rewrite({"neural_sparse": {"sp": {"query_text": TEXT}}}, ml=RecordingML())).query
    expected = {t: 1.0 for t in _wordpieces(TEXT) if "." not in t and t != "to"}  # weight 0 is dropped
    expected.update({"fun": 2.5, "sparse": 4.0})
    assert _tokens(out) == expected


async def test_long_text_keeps_every_token():
    text = " ".join(f"word{i}" for i in range(400))  # > 512 word pieces
    out = (await rewrite({"neural_sparse": {"sp": {"query_text": text}}}, ml=RecordingML())).query
    assert set(_tokens(out)) == set(_wordpieces(text))


async def test_query_tokens_are_used_as_given():
    out = (await rewrite({"neural_sparse": {"sp": {"query_tokens": {"a": 0.5}, "analyzer": "bert-uncased"}}},
                         ml=RecordingML())).query
    assert _tokens(out) == {"a": 0.5}


@pytest.mark.parametrize("params,message", [
    ({"analyzer": "standard"}, r"Analyzer \[standard\] not found in shard context. "),
    ({"analyzer": "mbert-uncased"}, r"Analyzer \[mbert-uncased\] not found in shard context. Its files are not "
                                    r"installed: put its tokenizer.json and idf.json in \$NEURALPIPE_ANALYSIS_DIR"),
    ({"analyzer": ""}, "analyzer field can not be empty"),
    ({"analyzer": "bert-uncased", "model_id": "m"},
     r"Cannot use both \[model_id: m\] and \[analyzer: bert-uncased\] for neural sparse query tokenization. Specify "
     r"only one tokenization method. These parameters can be set either in the query or through the "
     r"neural_query_enricher search processor."),
])
async def test_analyzer_errors(params, message):
    with pytest.raises(IllegalArgument, match=message):
        await rewrite({"neural_sparse": {"sp": {"query_text": TEXT, **params}}}, ml=RecordingML())
