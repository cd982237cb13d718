"""Print, export or import the live-trading configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from lifecycle.models import Strategy
from tradingsite.live_config import (
    LiveConfigError,
    LiveTradingConfig,
    bounds_table,
    build,
    clear_cache,
    override_layers,
    read_config_file,
    site_config,
)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        rows.extend(_flatten(value, path) if isinstance(value, dict) else [(path, value)])
    return rows


def _strategies_broken_by(site: LiveTradingConfig) -> str:
    """The strategies whose overrides would be invalid on top of ``site``, as one line."""
    errors = []
    for strategy in Strategy.objects.exclude(live_trading={}).order_by("name"):
        try:
            build([("", strategy.live_trading)], base=site)
        except LiveConfigError as exc:
            errors.append(f"strategy {strategy.name!r}: {exc}")
    return "; ".join(errors)


class Command(BaseCommand):
    help = ("Show the effective live-trading config (site-wide or of one strategy); "
            "--export writes it as JSON, --import validates a JSON file and stores it, "
            "--bounds lists every key's bounds.")
    # This command validates the config itself, and must be able to replace a bad one.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--strategy", help="Strategy name: show/import its overrides.")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
        parser.add_argument("--export", metavar="FILE", help="Write the effective config to FILE.")
        parser.add_argument("--import", dest="import_file", metavar="FILE",
                            help="Validate FILE and store it (site config file, or the "
                                 "strategy's overrides with --strategy).")
        parser.add_argument("--bounds", action="store_true",
                            help="List every key with its default and bounds.")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["bounds"]:
            for key, default, bounds, _ in bounds_table():
                self.stdout.write(f"  {key:<52} {default:>8}  {bounds}")
            return
        strategy = self._strategy(opts["strategy"])
        if opts["import_file"]:
            self._import(Path(opts["import_file"]), strategy)
        try:
            cfg = strategy.effective_config() if strategy else site_config()
        except LiveConfigError as exc:
            raise CommandError(f"invalid live-trading config: {exc}") from None
        data = cfg.to_json_dict()
        if opts["export"]:
            Path(opts["export"]).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            self.stdout.write(f"exported the effective config to {opts['export']}")
            return
        if opts["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        scope = f"strategy {strategy.name}" if strategy else "site-wide"
        self.stdout.write(f"Effective live-trading config ({scope}):")
        rows = _flatten(data)
        width = max(len(key) for key, _ in rows)
        for key, value in rows:
            self.stdout.write(f"  {key:<{width}}  {json.dumps(value)}")

    def _strategy(self, name: str | None) -> Strategy | None:
        if not name:
            return None
        try:
            return Strategy.objects.get(name=name)
        except Strategy.DoesNotExist:
            raise CommandError(f"no strategy named {name!r}") from None

    def _import(self, path: Path, strategy: Strategy | None) -> None:
        """Validate ``path`` where it will sit in the layers, then store it; else nothing."""
        try:
            layer = read_config_file(path)
            if strategy:
                strategy.live_trading = layer
                strategy.effective_config()  # validates on top of the site config
                strategy.save(update_fields=["live_trading"])
                self.stdout.write(f"imported {path} as the overrides of strategy {strategy.name}")
                return
            site = build([(str(path), layer), *override_layers()])
        except LiveConfigError as exc:
            raise CommandError(f"{path}: nothing imported: {exc}") from None
        broken = _strategies_broken_by(site)
        if broken:
            raise CommandError(f"{path}: nothing imported: {broken}")
        target = Path(settings.LIVE_TRADING_FILE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"liveTrading": layer}, indent=2) + "\n", encoding="utf-8")
        clear_cache()
        self.stdout.write(f"imported {path} into {target}")
