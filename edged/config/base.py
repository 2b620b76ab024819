"""What every config model shares: strict models, the name rule, reconnect backoff."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

# Names become MQTT topic levels and Home Assistant object ids: Home Assistant accepts only
# [a-zA-Z0-9_-] there, and some brokers (NATS) map '/' to '.', so '.' is out as well.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
NAME_RULE = "use only letters, digits, '_' and '-'"


def _topic_safe(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        hint = ""
        suggestion = safe_name(value)
        if suggestion != value and suggestion != "edged":
            hint = f"; e.g. {suggestion!r}"
        raise ValueError(f"{NAME_RULE} (it becomes an MQTT topic level and a Home Assistant "
                         f"id){hint}")
    return value


def safe_name(value: str) -> str:
    """`value` with every character outside the name rule replaced by '_' (for hints and the
    default node_id from the host name)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", value).strip("_") or "edged"


Name = Annotated[str, AfterValidator(_topic_safe)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ReconnectConfig(_Strict):
    initial_s: float = Field(1.0, gt=0, description="First retry delay in seconds; doubles each try.")
    max_s: float = Field(30.0, gt=0, description="Largest retry delay in seconds.")

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self


class _PasswordSources(_Strict):
    """Where a password comes from (never the config file itself); read by credentials.py."""

    password_file: str | None = Field(None, description="File holding the password.")
    password_env: str | None = Field(
        None, description="Environment variable holding the password."
    )
    password_credential: str | None = Field(
        None, description="systemd credential name holding the password ($CREDENTIALS_DIRECTORY)."
    )

    def password_sources(self) -> list[str]:
        return [k for k in ("password_file", "password_env", "password_credential")
                if getattr(self, k) is not None]


class Variants(_Strict):
    """A config model that validates as one of its variants: the discriminated union built
    from a registry (a camera as its source kind's model, a model as its backend's).

    The class that defines `variants()` is the union's root: `Root.model_validate(data)` and
    `Root(**data)` both give the variant that `variant_of(data)` names. Variants subclass
    the root and add their own settings.
    """

    @classmethod
    def variants(cls) -> dict[str, type[Variants]]:
        raise NotImplementedError

    @classmethod
    def variant_of(cls, data: dict[str, Any], base_dir: str | None) -> str | None:
        """Which variant `data` is (None: unknown; the root's own checks then say why)."""
        raise NotImplementedError

    @classmethod
    def _root(cls) -> type[Variants] | None:
        return next((c for c in cls.__mro__ if "variants" in c.__dict__), None)

    @classmethod
    def variant_settings(cls) -> dict[str, set[str]]:
        """Each setting that only some variants have -> the variants that have it."""
        root = cls._root()
        assert root is not None
        common = set(root.model_fields)
        out: dict[str, set[str]] = {}
        for kind, model in root.variants().items():
            for key in set(model.model_fields) - common:
                out.setdefault(key, set()).add(kind)
        return out

    @classmethod
    def _variant_for(cls, data: dict[str, Any], base_dir: str | None) -> type[Variants] | None:
        kind = cls.variant_of(data, base_dir)
        return cls.variants().get(kind) if kind is not None else None

    def __new__(cls, *args: Any, **data: Any) -> Variants:  # noqa: ANN401
        if cls._root() is cls and data:
            model = cls._variant_for(data, None)
            if model is not None:
                return super().__new__(model)  # Python then runs model's __init__(**data)
        return super().__new__(cls)

    @model_validator(mode="wrap")
    @classmethod
    def _as_variant(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:  # noqa: ANN401
        if cls._root() is not cls or not isinstance(data, dict):
            return handler(data)
        model = cls._variant_for(data, (info.context or {}).get("base_dir"))
        if model is None:  # the root's own fields say what is wrong
            return handler({k: v for k, v in data.items() if k not in cls.variant_settings()})
        return model.model_validate(data, context=info.context)
