"""Every prompt version in a folder, loaded, validated and checked against the lock once.

The folder holds one sub-folder per named prompt and one file per version::

    prompts/
      prompts.lock          content hashes of the released versions (app.prompting.lock)
      answer/v1.toml        the prompt that answers /ask
      condense/v1.toml      the prompt that makes a follow-up standalone

The file name is the version (and must match its ``version`` key); the folder name is the
prompt's name and decides how it is read (``KINDS``). Look a version up with
``registry.answer("v1")``, ``registry.condense("v1")`` or, untyped, ``registry.get(name, version)``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec

from app.errors import ConfigError
from app.prompting.lock import LOCK_FILE, check_lock, natural_key, version_files
from app.prompting.template import KINDS, AnyTemplate, CondenseTemplate, ModelParameters, PromptTemplate

__all__ = ["PromptRegistry", "PromptVersion"]

T = TypeVar("T", PromptTemplate, CondenseTemplate)


@dataclass(frozen=True, slots=True)
class PromptVersion:
    """One version file, loaded."""

    name: str
    version: str
    template: AnyTemplate
    hash: str
    """``sha256:<hex>`` of the file (``app.prompting.lock``)."""
    released: bool
    """In the lock. A draft (not released) may still change; ``kb prompts lock`` releases it."""
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def description(self) -> str:
        return self.template.description

    @property
    def parameters(self) -> ModelParameters:
        return self.template.parameters


class PromptRegistry:
    """Every version under a folder. Refuses to load an edited or missing released version."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"prompt template directory {self.directory} does not exist")
        flat = sorted(path.name for path in self.directory.glob("*.toml"))
        if flat:
            raise ConfigError(
                f"prompt files {', '.join(flat)} in {self.directory} are not in a prompt's folder: "
                f"versions live in <name>/<version>.toml (move v1.toml to answer/v1.toml)"
            )
        report = check_lock(self.directory)
        if report.problems:
            raise ConfigError(
                f"prompts in {self.directory}: " + "; ".join(problem.message for problem in report.problems)
            )
        self._versions: dict[str, dict[str, PromptVersion]] = {}
        for name, files in version_files(self.directory).items():
            kind = KINDS.get(name)
            if kind is None:
                raise ConfigError(
                    f"prompt folder {self.directory / name}: unknown prompt {name!r} "
                    f"(known: {', '.join(sorted(KINDS))})"
                )
            for version, path in files.items():
                self._versions.setdefault(name, {})[version] = PromptVersion(
                    name=name,
                    version=version,
                    template=_load(path, kind),
                    hash=report.hashes[(name, version)],
                    released=(name, version) in report.released,
                    path=path,
                )
        if not self._versions:
            raise ConfigError(f"no prompt templates (<name>/<version>.toml) in {self.directory}")

    @property
    def lock_path(self) -> Path:
        return self.directory / LOCK_FILE

    def names(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, name: str) -> list[str]:
        """The versions of ``name``, oldest first (``v2`` before ``v10``); empty if unknown."""
        return sorted(self._versions.get(name, {}), key=natural_key)

    def has(self, name: str, version: str) -> bool:
        return version in self._versions.get(name, {})

    def entry(self, name: str, version: str) -> PromptVersion:
        """One version; ``ConfigError`` naming the available ones when it does not exist."""
        try:
            return self._versions[name][version]
        except KeyError:
            if name not in self._versions:
                raise ConfigError(
                    f"unknown prompt {name!r}; prompts in {self.directory}: {', '.join(self.names())}"
                ) from None
            raise ConfigError(
                f"unknown prompt version {version!r} of {name!r}; available in {self.directory}: "
                + ", ".join(self.versions(name))
            ) from None

    def get(self, name: str, version: str) -> AnyTemplate:
        return self.entry(name, version).template

    def answer(self, version: str) -> PromptTemplate:
        """A version of the ``answer`` prompt."""
        return self._typed("answer", version, PromptTemplate)

    def condense(self, version: str) -> CondenseTemplate:
        """A version of the ``condense`` prompt."""
        return self._typed("condense", version, CondenseTemplate)

    def _typed(self, name: str, version: str, kind: type[T]) -> T:
        template = self.get(name, version)
        assert isinstance(template, kind)  # KINDS decides the type by the name
        return template


def _load(path: Path, kind: type[PromptTemplate] | type[CondenseTemplate]) -> AnyTemplate:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"prompt template {path}: cannot be read as TOML: {exc}") from None
    try:
        template: AnyTemplate = msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"prompt template {path}: {exc}") from None
    # The file name is the version, so a copied file cannot silently shadow another version.
    if template.version != path.stem:
        raise ConfigError(
            f"prompt template {path}: version {template.version!r} does not match the file name"
        )
    return template
