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

from app.errors import ConfigError
from app.records import DEFAULT_TENANT
from app.settings.access import AccessSettings, StaticKeySettings, TenantName
from app.settings.answers import AnswerSettings
from app.settings.base import NonNegativeInt, PositiveFloat, PositiveInt, UnitFloat, _Section
from app.settings.embedding import EmbeddingSettings
from app.settings.limits import LimitSettings
from app.settings.observability import ObservabilitySettings
from app.settings.prompts import PromptSettings
from app.settings.retrieval import FusionName, RetrievalSettings, RetrieverMode
from app.settings.server import ServerSettings
from app.settings.state import StateSettings
from app.settings.store import StoreSettings

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

    tenant: TenantName = DEFAULT_TENANT
    """The tenant documents are ingested for unless ``kb ingest --tenant`` or ``--shared`` says
    otherwise: the one tenant of a single-team install. Chunks written before tenants were
    recorded are assigned to it (docs/tenants.md)."""


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

    def check_provider(self) -> None:
        """Fail early when the chosen provider lacks what it needs (at load, before the model)."""
        if self.provider == "openai":
            self.openai_endpoint()

    def openai_endpoint(self) -> tuple[str, str]:
        """The OpenAI-compatible server's base URL and model, or the ConfigError naming them."""
        if not (self.openai_base_url and self.openai_model):
            raise ConfigError(
                "generation.provider = 'openai' needs generation.openai_base_url (e.g. "
                "http://localhost:11434/v1) and generation.openai_model "
                "(KB_GENERATION__OPENAI_BASE_URL, KB_GENERATION__OPENAI_MODEL)"
            )
        return self.openai_base_url, self.openai_model


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
