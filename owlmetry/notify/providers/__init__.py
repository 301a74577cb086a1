"""Push providers: one platform's push service each (`apns`: iOS; `fcm`: Android),
for the `mobile_push` channel to route devices to. A provider is a `Sender`
(`owlmetry.notify.channels.base`) without targets of its own: the channel claims the
recipient's devices and hands each to its platform's provider. This package holds no list of
providers: `mobile_push` says which platform each one serves.
"""
