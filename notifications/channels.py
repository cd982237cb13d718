"""Channels: ``NOTIFY_URLS`` parsing, ``{env:NOTIFY_…}`` secrets, masking, routing rules.

``NOTIFY_URLS`` is a comma-separated list of Apprise URLs. Each may start with options,
each followed by a colon::

    severity>=WARNING:          only WARNING and CRITICAL
    kind=danger_*|position_*:   only these kinds (| separated, * and ? wildcards)
    quiet=22:00-07:00:          quiet hours in TIME_ZONE (CRITICAL still passes)
    rate=5/60:                  at most 5 messages per 60 s, the excess in one digest
    name=ops-telegram:          the channel's name (default env-<scheme>, env-<scheme>-2, …)

A secret never has to be written in clear: ``{env:NOTIFY_TELEGRAM_TOKEN}`` is replaced
by that variable when a message is sent (or by the file named in
``NOTIFY_TELEGRAM_TOKEN_FILE``). Only variables starting with ``NOTIFY_`` may be named,
so no channel can carry ``SECRET_KEY`` or ``DATABASE_URL`` to a server.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError

from notifications import transport
from notifications.models import SEVERITY_RANK, ChannelSource, NotificationChannel
from risk.models import AlertSeverity
from tradingsite.env import SettingsError, env_str

SECRET_PREFIX = "NOTIFY_"
PLACEHOLDER = re.compile(r"\{env:([^{}]*)\}")
VARIABLE = re.compile(r"^NOTIFY_[A-Z0-9_]+$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
OPTION = re.compile(
    r"^\s*(?:severity\s*>=\s*(?P<severity>[A-Za-z]+)"
    r"|kind=(?P<kind>[A-Za-z0-9_*?|.-]+)"
    r"|quiet=(?P<quiet>\d{1,2}:\d{2}-\d{1,2}:\d{2})"
    r"|rate=(?P<rate>\d+/\d+)"
    r"|name=(?P<name>[A-Za-z0-9_.-]{1,64}))\s*:")
# Items are split at commas followed by what starts an item (an option, a scheme), so a
# comma inside a URL's query (``?to=a,b``) stays part of it; a mistyped option still
# starts an item of its own, and is refused by name.
ITEM_START = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9_+.-]*\s*(?:>=|=|://))")


class ChannelConfigError(ValueError):
    """A channel cannot be used as configured; the message never contains the URL."""


class MissingVariable(ChannelConfigError):
    """A ``{env:NOTIFY_…}`` placeholder names a variable that is not set in this process."""


@dataclass(frozen=True)
class ChannelRules:
    """Who receives what: the routing of one channel, from NOTIFY_URLS or a row."""

    min_severity: str = AlertSeverity.INFO
    kinds: tuple[str, ...] = ()
    exclude_kinds: tuple[str, ...] = ()

    def accepts(self, kind: str, severity: str) -> bool:
        if SEVERITY_RANK[severity] < SEVERITY_RANK[self.min_severity]:
            return False
        if self.kinds and not any(fnmatch.fnmatchcase(kind, p) for p in self.kinds):
            return False
        return not any(fnmatch.fnmatchcase(kind, p) for p in self.exclude_kinds)


@dataclass(frozen=True)
class EnvChannel:
    """One item of ``NOTIFY_URLS`` (or ``WATCHDOG_NOTIFY_URLS``)."""

    name: str
    url: str  # as written: placeholders unresolved
    rules: ChannelRules = field(default_factory=ChannelRules)
    quiet: tuple[time, time] | None = None
    rate: tuple[int, int] | None = None


def patterns(text: str) -> tuple[str, ...]:
    """``"danger_*, order_*"`` → ``("danger_*", "order_*")``."""
    return tuple(p for p in re.split(r"[\s,|]+", text or "") if p)


def _clock(text: str, what: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours > 23 or minutes > 59:
        raise ChannelConfigError(f"{what}: {text} is not a time of day (00:00 to 23:59)")
    return time(hours, minutes)


def parse_notify_urls(raw: str, *, variable: str = "NOTIFY_URLS") -> list[EnvChannel]:
    """The channels of a ``NOTIFY_URLS`` value; ``ChannelConfigError`` names the item.

    Checks the form of every item, its options and its placeholders; whether Apprise
    accepts the URL is ``check_url``'s job (it needs the variables' values).
    """
    channels: list[EnvChannel] = []
    names: set[str] = set()
    schemes: dict[str, int] = {}
    items = [item.strip() for item in ITEM_START.split(raw or "") if item.strip()]
    for number, item in enumerate(items, start=1):
        where = f"{variable} item {number}"
        options: dict[str, str] = {}
        rest = item
        while not SCHEME.match(rest):
            option = OPTION.match(rest)
            if option is None:
                raise ChannelConfigError(
                    f"{where}: expected [severity>=LEVEL:][kind=…:][quiet=HH:MM-HH:MM:]"
                    "[rate=N/SECONDS:][name=…:]scheme://…")
            key = next(k for k, v in option.groupdict().items() if v is not None)
            if key in options:
                raise ChannelConfigError(f"{where}: option {key} given twice")
            options[key] = option.group(key)
            rest = rest[option.end():].lstrip()
        severity = options.get("severity", AlertSeverity.INFO).upper()
        if severity not in AlertSeverity.values:
            raise ChannelConfigError(f"{where}: unknown severity {options['severity']!r} "
                                     f"(INFO, WARNING or CRITICAL)")
        quiet = None
        if "quiet" in options:
            start, end = options["quiet"].split("-")
            quiet = (_clock(start, f"{where} quiet"), _clock(end, f"{where} quiet"))
            if quiet[0] == quiet[1]:
                raise ChannelConfigError(f"{where}: quiet hours start and end at the same time")
        rate = None
        if "rate" in options:
            count, seconds = (int(x) for x in options["rate"].split("/"))
            if not (1 <= count <= 10_000 and 1 <= seconds <= 86_400):
                raise ChannelConfigError(f"{where}: rate must be 1–10000 messages per "
                                         f"1–86400 s, got {options['rate']}")
            rate = (count, seconds)
        placeholder_errors = template_errors(rest)
        if placeholder_errors:
            raise ChannelConfigError(f"{where}: {placeholder_errors[0]}")
        scheme = rest.split("://", 1)[0].lower()
        schemes[scheme] = schemes.get(scheme, 0) + 1
        name = options.get("name") or (f"env-{scheme}" if schemes[scheme] == 1
                                       else f"env-{scheme}-{schemes[scheme]}")
        if name in names:
            raise ChannelConfigError(f"{where}: channel name {name!r} used twice")
        names.add(name)
        channels.append(EnvChannel(
            name=name, url=rest, quiet=quiet, rate=rate,
            rules=ChannelRules(min_severity=severity, kinds=patterns(options.get("kind", "")))))
    return channels


def template_errors(template: str) -> list[str]:
    """What is wrong with the ``{env:…}`` placeholders of a URL (nothing: ``[]``)."""
    errors = []
    for name in PLACEHOLDER.findall(template):
        if not VARIABLE.match(name):
            errors.append(f"{{env:{name}}}: only variables named NOTIFY_… (capitals, digits, _) "
                          "may be used in a channel URL")
    if "{env:" in PLACEHOLDER.sub("", template):
        errors.append("an {env:… placeholder is not closed with }")
    return errors


@dataclass(frozen=True)
class ResolvedUrl:
    url: str
    values: tuple[str, ...]  # the placeholders' values
    parts: tuple[str, ...]  # what Apprise calls secret in the URL

    @property
    def secrets(self) -> tuple[str, ...]:
        """Everything to mask wherever this channel's sends are described."""
        return (*self.values, *self.parts)


def resolve(template: str) -> ResolvedUrl:
    """The URL to send to, placeholders replaced by their variables' values.

    ``ChannelConfigError`` when a variable is missing or not allowed.
    """
    errors = template_errors(template)
    if errors:
        raise ChannelConfigError(errors[0])
    values: list[str] = []

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        try:
            text = env_str(name, "")
        except SettingsError as exc:
            raise ChannelConfigError(str(exc)) from None
        if not text:
            raise MissingVariable(f"{name} is not set (the channel URL names {{env:{name}}})")
        values.append(text)
        return text

    url = PLACEHOLDER.sub(value, template)
    return ResolvedUrl(url=url, values=tuple(values), parts=tuple(transport.secret_parts(url)))


def literal_secrets(template: str) -> list[str]:
    """Secrets written in clear in ``template`` (Apprise's secret parts no placeholder covers).

    Checked with the variables' real values when they are set; a URL whose variables
    are not set here is checked with them left out (they cannot be literal).
    """
    try:
        resolved = resolve(template)
    except ChannelConfigError:
        return []
    return [part for part in resolved.parts if not any(part in v for v in resolved.values)]


def check_url(template: str, *, missing_ok: bool = False) -> list[str]:
    """Everything wrong with an Apprise URL template, as messages without the URL.

    ``missing_ok``: a variable not set in this process is no error (start-up warns
    instead: a missing notification secret must not stop trading from starting).
    """
    errors = template_errors(template)
    if errors:
        return errors
    if not SCHEME.match(template.strip()):
        return ["expected an Apprise URL, scheme://…"]
    try:
        resolved = resolve(template)
    except MissingVariable as exc:
        return [] if missing_ok else [str(exc)]
    except ChannelConfigError as exc:
        return [str(exc)]
    if not transport.accepts(resolved.url):
        return [f"Apprise does not accept this {template.split('://', 1)[0]}:// URL "
                "(unknown scheme or missing parts)"]
    if literal_secrets(template):
        return ["the URL holds a secret in clear (a token, key or password): put it into a "
                "NOTIFY_… environment variable and write {env:NOTIFY_…} in its place"]
    return []


def display_url(channel: NotificationChannel) -> str:
    """What the admin shows: never a secret."""
    if channel.source == ChannelSource.ENV:
        spec = env_channels().get(channel.name)
        if spec is None:
            return "(no longer in NOTIFY_URLS)"
        template = spec.url
    else:
        template = channel.url
    if not literal_secrets(template):
        return template
    try:
        return transport.private_url(resolve(template).url)
    except ChannelConfigError:
        return "(hidden)"


def channel_errors(channel: NotificationChannel) -> None:
    """Model validation of an admin channel: ``ValidationError`` naming the field."""
    if channel.source != ChannelSource.ADMIN:
        raise ValidationError("Channels from NOTIFY_URLS are changed in the environment, "
                              "not here.")
    errors: dict[str, list[str]] = {}
    if not channel.url.strip():
        errors["url"] = ["An Apprise URL is needed."]
    elif problems := check_url(channel.url.strip()):
        errors["url"] = problems
    if (channel.quiet_start is None) != (channel.quiet_end is None):
        errors["quiet_end" if channel.quiet_start else "quiet_start"] = [
            "Quiet hours need a start and an end."]
    elif channel.quiet_start is not None and channel.quiet_start == channel.quiet_end:
        errors["quiet_end"] = ["Quiet hours must end at another time than they start."]
    for name in ("rate_limit_messages", "rate_limit_seconds"):
        value = getattr(channel, name)
        high = 10_000 if name == "rate_limit_messages" else 86_400
        if value is not None and not 1 <= value <= high:
            errors[name] = [f"Between 1 and {high:,}."]
    if channel.name.startswith("env-") or channel.name in env_channels():
        errors["name"] = ["This name belongs to a NOTIFY_URLS channel (env-…)."]
    if errors:
        raise ValidationError(errors)


# --- NOTIFY_URLS in the database ---------------------------------------------------------------

def env_channels(variable: str = "NOTIFY_URLS") -> dict[str, EnvChannel]:
    """The channels of ``settings.<variable>`` by name; a bad value is a ChannelConfigError."""
    return {c.name: c for c in parse_notify_urls(getattr(settings, variable, ""),
                                                 variable=variable)}


_synced: dict[str, str] = {}


def sync_env_channels() -> None:
    """Mirror ``NOTIFY_URLS`` into channel rows (no URL stored), once per value and process.

    A channel that left the variable is disabled, not deleted: its delivery log stays.
    """
    raw = settings.NOTIFY_URLS
    if _synced.get("raw") == raw:
        return
    specs = env_channels()
    existing = {c.name: c for c in NotificationChannel.objects.filter(source=ChannelSource.ENV)}
    for name, spec in specs.items():
        values = {
            "enabled": True, "min_severity": spec.rules.min_severity,
            "kinds": ", ".join(spec.rules.kinds), "exclude_kinds": "",
            "rate_limit_messages": spec.rate[0] if spec.rate else None,
            "rate_limit_seconds": spec.rate[1] if spec.rate else None,
            "quiet_start": spec.quiet[0] if spec.quiet else None,
            "quiet_end": spec.quiet[1] if spec.quiet else None,
        }
        row = existing.get(name)
        if row is None:
            NotificationChannel.objects.get_or_create(
                name=name, defaults={"source": ChannelSource.ENV, **values})
        elif any(getattr(row, k) != v for k, v in values.items()):
            NotificationChannel.objects.filter(pk=row.pk).update(**values)
    NotificationChannel.objects.filter(source=ChannelSource.ENV, enabled=True).exclude(
        name__in=list(specs)).update(enabled=False)
    _synced["raw"] = raw


def forget_env_sync() -> None:
    _synced.clear()


def channel_url(channel: NotificationChannel) -> ResolvedUrl:
    """The URL to send to for a channel row; ChannelConfigError when it cannot be built."""
    if channel.source == ChannelSource.ENV:
        spec = env_channels().get(channel.name)
        if spec is None:
            raise ChannelConfigError(f"{channel.name} is no longer in NOTIFY_URLS")
        return resolve(spec.url)
    return resolve(channel.url)


def rules_of(channel: NotificationChannel) -> ChannelRules:
    return ChannelRules(min_severity=channel.min_severity, kinds=patterns(channel.kinds),
                        exclude_kinds=patterns(channel.exclude_kinds))


# --- quiet hours ------------------------------------------------------------------------------

def quiet_until(start: time | None, end: time | None, now: datetime) -> datetime | None:
    """The end of the quiet hours ``now`` falls into (TIME_ZONE), or None outside them."""
    if start is None or end is None:
        return None
    zone = ZoneInfo(settings.TIME_ZONE)
    local = now.astimezone(zone)
    clock = local.time()
    inside = (start <= clock < end) if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    ends = datetime.combine(local.date(), end, tzinfo=zone)
    if ends <= local:
        ends = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=zone)
    return ends


def watchdog_channels() -> list[EnvChannel]:
    """Where the watchdog speaks: WATCHDOG_NOTIFY_URLS, else NOTIFY_URLS."""
    if settings.WATCHDOG_NOTIFY_URLS.strip():
        return list(env_channels("WATCHDOG_NOTIFY_URLS").values())
    return list(env_channels().values())
