"""Notifications: the dispatcher that turns "tell these users" into a push on every device.

`dispatcher` owns the work queue's loop (claim, deliver, record, retry, lease renewal) and
`outcomes` the batched writing of what each device answered. `channel` is the one interface
every way of reaching a device implements, and `channels/` holds the implementations, one
module each, found by themselves. This package talks to the database only through the store,
and to Apple only through a channel.
"""
