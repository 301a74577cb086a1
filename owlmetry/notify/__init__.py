"""Notifications: the dispatcher that turns "tell these users" into a push on every device.

`dispatcher` owns the work queue's loop (claim, deliver, record, retry, lease renewal) and
`recorder` the batched recording of what each device answered, `routing` which deliveries each
recipient gets, `pacing` how many devices may be in flight, `releaser` scheduled sends.
`channels/` holds the one interface every way of reaching a user implements (`channels/base`)
and the implementations, one module each, found by themselves; `providers/` the push services
behind `mobile_push` (APNs for iOS, FCM for Android). This package talks to the database only
through the store, and to a push service only through a channel and its provider.
"""
