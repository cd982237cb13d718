"""Django's ``diffsettings`` with connection URLs and credentials masked."""

from __future__ import annotations

from typing import Any

from django.core.management.commands.diffsettings import Command as DjangoDiffSettings

from tradingsite.security import masked_settings


class Command(DjangoDiffSettings):
    help = DjangoDiffSettings.help + " Connection URLs and credentials are masked."

    def output_hash(self, user_settings: dict[str, Any], default_settings: dict[str, Any],
                    **options: Any) -> list[str]:
        return super().output_hash(masked_settings(user_settings),
                                   masked_settings(default_settings), **options)

    def output_unified(self, user_settings: dict[str, Any], default_settings: dict[str, Any],
                       **options: Any) -> list[str]:
        return super().output_unified(masked_settings(user_settings),
                                      masked_settings(default_settings), **options)
