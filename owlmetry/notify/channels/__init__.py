"""The channels: the interface (`base`) and its implementations, one module each.

Every module here that sets `CHANNEL` is a channel (`base` sets none). Discovery is by folder,
so adding a channel (a webhook, say) is adding one module; a new push service for
`mobile_push` is a provider (`notify/providers/`). This package owns the list of channels and
nothing else.
"""

import functools
import importlib
import pkgutil

from owlmetry.config import Config
from owlmetry.notify.channels.base import Channel
from owlmetry.store import NotificationContent


@functools.cache
def channel_types() -> dict[str, type[Channel]]:
    """Every channel by name, in name order."""
    found = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        channel = getattr(module, "CHANNEL", None)
        if channel is not None:
            found[channel.name] = channel
    return dict(sorted(found.items()))


def open_channels(config: Config) -> dict[str, Channel]:
    return {name: kind.from_config(config) for name, kind in channel_types().items()}


def check_content(content: NotificationContent, config: Config) -> None:
    """Raise ValueError ("<channel>: why") if some channel of a server with `config` could
    never carry `content`."""
    for kind in channel_types().values():
        try:
            kind.check_content(content, config)
        except ValueError as exc:
            raise ValueError(f"{kind.name}: {exc}") from None
