"""Which deliveries each recipient of a notification gets: their preferences for its type, over
the per-type defaults, against the channels this dispatcher has.

A preference channel (`in_app`, `email`, `mobile_push`) that is on gives a delivery on the
dispatcher's channel of that name, and a channel no preference names (a webhook, say) always
gets one; `in_app` is the inbox itself: off, the inbox row is still
written (the other channels send its content) but born deleted. Recipients are grouped by what
they get, so the store writes each group with the same statements. Owns this mapping only:
must not read the database (the caller brings the stored preferences) or know a channel's
workings.
"""

from collections.abc import Iterable, Mapping

from owlmetry.preferences import CHANNELS, Defaults
from owlmetry.store import RecipientGroup

INBOX = "in_app"


def group_recipients(
    recipients: list[tuple[str, str]], type: str, stored: Mapping[str, Mapping],
    defaults: Defaults, channels: Iterable[str],
) -> list[RecipientGroup]:
    """`recipients` (notification_id, user_id) grouped by the deliveries they get; `stored`
    holds the preferences of the users that have any (equal ones may share one object)."""
    channels = tuple(channels)

    def route(preferences: Mapping | None) -> tuple[tuple[str, ...], bool]:
        chosen = defaults.channels(type, preferences)
        return (tuple(channel for channel in channels
                      if channel in chosen or channel not in CHANNELS),
                INBOX in chosen)

    # Most users have no preferences, and those that do mostly share a few: each distinct
    # object is looked at once.
    routes: dict[int, tuple[tuple[str, ...], bool]] = {id(None): route(None)}
    groups: dict[tuple[tuple[str, ...], bool], list[tuple[str, str]]] = {}
    for recipient in recipients:
        preferences = stored.get(recipient[1])
        key = routes.get(id(preferences))
        if key is None:
            key = routes[id(preferences)] = route(preferences)
        groups.setdefault(key, []).append(recipient)
    return [RecipientGroup(channels, listed, members)
            for (channels, listed), members in groups.items()]
