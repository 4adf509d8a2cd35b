"""The configuration file's shape (TOML), validated by pydantic; loaded by :mod:`stasis_app.config`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.rcml import HttpMethod

__all__ = ["AriSettings", "NumberConfig", "RoutingSettings", "Settings", "WebhookSettings"]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AriSettings(_Config):
    url: str = "http://127.0.0.1:8088"
    username: str = "asterisk"
    password: str = "asterisk"
    app: str = "rcml"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class RoutingSettings(_Config):
    apps_dir: Path = Path("apps")
    client: str = "PJSIP/{client}"
    number: str = "PJSIP/{number}@trunk"
    sip: str = "PJSIP/trunk/{uri}"
    # How a <Number> that is one of ours reaches that number's Voice app: back into the Stasis context.
    local: str = "Local/{number}@rcml/n"


class WebhookSettings(_Config):
    timeout: float = Field(default=5.0, gt=0, le=60)
    account_sid: str = "ACae6e420f425248d6a26948c17a9e2acf"


class NumberConfig(_Config):
    number: str = Field(min_length=1)
    voice_url: str
    voice_method: HttpMethod = "POST"
    refer_url: str | None = None
    refer_method: HttpMethod = "POST"

    @field_validator("voice_url", "refer_url")
    @classmethod
    def _app_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "app:")):
            raise ValueError("must be http://, https:// or app:NAME")
        return value


class Settings(_Config):
    ari: AriSettings = AriSettings()
    routing: RoutingSettings = RoutingSettings()
    webhooks: WebhookSettings = WebhookSettings()
    numbers: tuple[NumberConfig, ...] = ()
    # Folder of the config file: apps_dir is relative to it.
    base_dir: Path = Path(".")

    def number(self, number: str) -> NumberConfig | None:
        """The configured number, or None."""
        for entry in self.numbers:
            if entry.number == number:
                return entry
        return None

    @property
    def apps_path(self) -> Path:
        return self.routing.apps_dir if self.routing.apps_dir.is_absolute() else self.base_dir / self.routing.apps_dir
