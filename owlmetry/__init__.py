"""Owlmetry push service: a per-user registry of push endpoints and the fan-out that feeds them.

Sub-packages, one concern each: `http` (routes, auth, errors), `store` (the database behind one
async interface), `apns` (Apple's push service over a pool of HTTP/2 connections).
"""

__version__ = "0.2.0"
