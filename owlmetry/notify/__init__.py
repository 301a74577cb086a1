"""Notifications: the dispatcher that turns "tell these users" into a push on every device.

`dispatcher` owns the work queue's loop (claim, deliver, record, retry, lease renewal) and
`recorder` the batched recording of what each device answered. `channels/` holds the one
interface every way of reaching a device implements (`channels/base`) and the implementations,
one module each, found by themselves. This package talks to the database only through the store,
and to Apple only through a channel.
"""
