"""Notification preferences: which channels a user wants for each type of notification.

Owns the shape the Owlmetry apps read and write (`users.preferences`, a JSON object:
`{"notifications": {"types": {"<type>": {"<channel>": bool}}}, "ui": {...}}`), how a PATCH is
checked and merged into it, and the per-type defaults that apply where a user set nothing:
upstream Owlmetry's for its own types, today's behaviour (inbox and push, no email) for any
other type, and what the operator sets in NOTIFICATION_DEFAULTS over both. Must not read the
database or know about HTTP: callers pass the stored object in and store what comes out.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

CHANNELS = ("in_app", "email", "mobile_push")
# Upstream's NOTIFICATION_TYPE_META defaults (owlmetry/owlmetry packages/shared/src/preferences.ts),
# mirrored by the iOS app's preferences screen, so a user sees here what the app shows.
UPSTREAM_DEFAULTS = {
    "issue.new": {"in_app": True, "email": False, "mobile_push": True},
    "issue.digest": {"in_app": False, "email": True, "mobile_push": False},
    "feedback.new": {"in_app": True, "email": True, "mobile_push": True},
    "questionnaire.response_new": {"in_app": True, "email": False, "mobile_push": False},
    "job.completed": {"in_app": True, "email": True, "mobile_push": True},
    "app.rating_changed": {"in_app": True, "email": False, "mobile_push": True},
    "app.review_new": {"in_app": True, "email": True, "mobile_push": True},
}
# Any other type: what every notification got before preferences existed.
OTHER_TYPES = "*"
OTHER_TYPES_DEFAULT = {"in_app": True, "email": False, "mobile_push": True}

MAX_TYPE_LENGTH = 100  # the producer route's limit on `type`
MAX_TYPES = 200
MAX_UI_BYTES = 4096
# Upstream merges these `ui` members one level deeper, so one screen's PATCH keeps another's.
UI_MERGED_MEMBERS = ("columns", "dashboard")


class PreferenceError(ValueError):
    """A preferences body or setting that cannot be used; the message says which part."""


@dataclass(frozen=True)
class Defaults:
    """Per-type channel defaults: `by_type` for named types, `other` for the rest."""

    by_type: Mapping[str, Mapping[str, bool]] = field(default_factory=lambda: UPSTREAM_DEFAULTS)
    other: Mapping[str, bool] = field(default_factory=lambda: OTHER_TYPES_DEFAULT)

    def channels(self, type: str, preferences: Mapping | None) -> frozenset[str]:
        """The channels a notification of `type` goes to for a user with these preferences."""
        chosen = dict(self.other)
        chosen.update(self.by_type.get(type, {}))
        if preferences:
            chosen.update((preferences.get("notifications") or {}).get("types", {}).get(type, {}))
        return frozenset(channel for channel, on in chosen.items() if on)


def parse_defaults(text: str) -> Defaults:
    """NOTIFICATION_DEFAULTS: `{"<type>": {"<channel>": bool}, "*": {...}}`, laid over the
    built-in defaults channel by channel ("*" is every type not named)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise PreferenceError("must be a JSON object such as "
                              '{"feedback.new": {"email": false}, "*": {"mobile_push": true}}') from None
    types = check_types(value, allow_null=False)
    other = {**OTHER_TYPES_DEFAULT, **types.pop(OTHER_TYPES, {})}
    by_type = {name: dict(channels) for name, channels in UPSTREAM_DEFAULTS.items()}
    for name, channels in types.items():
        by_type[name] = {**by_type.get(name, {}), **channels}
    return Defaults(by_type, other)


def check_types(value, allow_null: bool) -> dict[str, dict[str, bool | None]]:
    """`{"<type>": {"<channel>": bool}}` checked; `null` values only where `allow_null`."""
    if not isinstance(value, dict):
        raise PreferenceError("types must be an object of notification types")
    if len(value) > MAX_TYPES:
        raise PreferenceError(f"at most {MAX_TYPES} notification types")
    checked = {}
    for name, channels in value.items():
        if not name or len(name) > MAX_TYPE_LENGTH or not name.isprintable():
            raise PreferenceError(f"a notification type is 1 to {MAX_TYPE_LENGTH} printable "
                                  f"characters, not {name[:MAX_TYPE_LENGTH]!r}")
        if not isinstance(channels, dict):
            raise PreferenceError(f"types.{name} must be an object of channels")
        for channel, on in channels.items():
            if channel not in CHANNELS:
                raise PreferenceError(f"types.{name}: unknown channel {channel[:40]!r} "
                                      f"(channels are {', '.join(CHANNELS)})")
            if not isinstance(on, bool) and not (allow_null and on is None):
                allowed = "true, false or null (back to the default)" if allow_null else "true or false"
                raise PreferenceError(f"types.{name}.{channel} must be {allowed}")
        checked[name] = dict(channels)
    return checked


def parse_patch(body) -> dict:
    """The `preferences` member of a PATCH /v1/auth/me body, checked: `notifications.types`
    (per type and channel: true, false, or null for the default) and `ui` (the dashboard's
    own settings, kept as given within a size bound)."""
    if not isinstance(body, dict):
        raise PreferenceError("preferences must be an object")
    unknown = sorted(set(body) - {"notifications", "ui", "version"})
    if unknown:
        raise PreferenceError(f"preferences: unknown member {unknown[0][:40]!r} "
                              "(known: notifications, ui, version)")
    patch = {}
    if "notifications" in body:
        notifications = body["notifications"]
        if not isinstance(notifications, dict) or set(notifications) - {"types"}:
            raise PreferenceError('preferences.notifications must be {"types": {...}}')
        patch["notifications"] = {"types": check_types(notifications.get("types", {}),
                                                       allow_null=True)}
    if "ui" in body:
        if not isinstance(body["ui"], dict) or len(orjson.dumps(body["ui"])) > MAX_UI_BYTES:
            raise PreferenceError(f"preferences.ui must be an object of at most {MAX_UI_BYTES} bytes")
        patch["ui"] = body["ui"]
    if "version" in body:
        if not isinstance(body["version"], int) or isinstance(body["version"], bool):
            raise PreferenceError("preferences.version must be a whole number")
        patch["version"] = body["version"]
    return patch


def merge(stored: Mapping | None, patch: Mapping) -> dict:
    """`patch` (from `parse_patch`) laid over `stored`, as upstream merges: per channel within a
    type (null removes the choice), `ui.columns` and `ui.dashboard` per member, the rest whole."""
    merged = dict(stored or {})
    if "version" in patch:
        merged["version"] = patch["version"]
    if "ui" in patch:
        ui = dict(merged.get("ui") or {})
        for name, value in patch["ui"].items():
            if name in UI_MERGED_MEMBERS and isinstance(value, dict):
                ui[name] = {**(ui.get(name) or {}), **value}
            else:
                ui[name] = value
        merged["ui"] = ui
    if "notifications" in patch:
        types = {name: dict(channels) for name, channels in
                 (merged.get("notifications") or {}).get("types", {}).items()}
        for name, channels in patch["notifications"]["types"].items():
            chosen = types.setdefault(name, {})
            for channel, on in channels.items():
                if on is None:
                    chosen.pop(channel, None)
                else:
                    chosen[channel] = on
            if not chosen:
                del types[name]
        if len(types) > MAX_TYPES:
            raise PreferenceError(f"at most {MAX_TYPES} notification types")
        merged["notifications"] = {"types": types}
    return merged


def shown(stored: Mapping | None) -> dict:
    """The preferences as GET /v1/auth/me shows them: always with `notifications.types`, the
    user's own choices only (an absent choice means the type's default)."""
    result = dict(stored or {})
    result["notifications"] = {"types": (result.get("notifications") or {}).get("types", {})}
    return result
