"""Owlmetry push service: a per-user registry of push endpoints and the fan-out that feeds them.

Sub-packages, one concern each: `http` (routes, auth, errors), `store` (the database behind one
async interface), `notify` (the dispatcher, its channels and push providers), `h2client` (the
HTTP/2 client core the providers sit on), `apns` (Apple's push service on it), `fcm` (Firebase
Cloud Messaging on it).
"""

__version__ = "0.3.0"
