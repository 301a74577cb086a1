"""The Devices API: `POST /v1/devices`, `GET /v1/devices`, `DELETE /v1/devices/{id}` (user-only).

Owns the validation rules of the contract and the device's JSON shape. A device registers as
today's Owlmetry clients do (`mobile_push` with a `platform`) or as the seed did (`ios_push`, an
iOS device); what a token of a platform looks like is `owlmetry.device_tokens`' rule. The token
never leaves this module in a response.
"""

from aiohttp import web

from owlmetry.clock import iso_ms, now_ms
from owlmetry.device_tokens import normalize_token
from owlmetry.http.auth import callers, user_gone
from owlmetry.http.context import CALLER, STORE
from owlmetry.http.errors import ApiError, json_response
from owlmetry.http.validation import parse_json_object, path_uuid
from owlmetry.ids import new_ordered_id
from owlmetry.store import DeleteResult, Device, DeviceChannel, DeviceRegistration, Platform

METADATA_LIMITS = {"app_version": 50, "device_model": 100, "os_version": 50}
CHANNELS = {channel.value: channel for channel in DeviceChannel}
PLATFORMS = {platform.value: platform for platform in Platform}


def one_of(names) -> str:
    return " or ".join(f'"{name}"' for name in names)


def parse_platform(channel: DeviceChannel, platform) -> Platform:
    """`mobile_push` requires a platform; the seed's `ios_push` is an iOS device, so a platform
    it gives (it need not) must be `ios`."""
    if channel is DeviceChannel.IOS_PUSH:
        if platform is not None and platform != Platform.IOS:
            raise ApiError(400, f'platform must be "{Platform.IOS}" (or absent) with channel '
                                f'"{DeviceChannel.IOS_PUSH}"')
        return Platform.IOS
    if platform is None:
        raise ApiError(400, f'platform is required with channel "{channel}" and must be '
                            f'{one_of(PLATFORMS)}')
    if not isinstance(platform, str) or platform not in PLATFORMS:
        # Upstream's words ("Invalid platform '<p>'"), then what it must be.
        shown = platform[:40] if isinstance(platform, str) else type(platform).__name__
        raise ApiError(400, f"Invalid platform '{shown}': platform must be {one_of(PLATFORMS)}")
    return PLATFORMS[platform]


def parse_registration(body: dict) -> DeviceRegistration:
    channel = body.get("channel")
    if not isinstance(channel, str) or channel not in CHANNELS:
        raise ApiError(400, f"channel is required and must be {one_of(CHANNELS)}")
    channel = CHANNELS[channel]
    platform = parse_platform(channel, body.get("platform"))
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise ApiError(400, "token is required and must be a non-empty string")
    try:
        token = normalize_token(platform, token)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    environment = body.get("environment")
    if environment is not None and not isinstance(environment, str):
        raise ApiError(400, "environment must be a string")
    metadata = {}
    for field, limit in METADATA_LIMITS.items():
        value = body.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise ApiError(400, f"{field} must be a string of at most {limit} characters, or null")
        metadata[field] = value
    return DeviceRegistration(
        channel=channel,
        platform=platform,
        token=token,
        environment="sandbox" if environment == "sandbox" else "production",
        **metadata,
    )


def device_json(device: Device) -> dict:
    return {
        "id": device.id,
        "channel": device.channel,
        "platform": device.platform,
        "environment": device.environment,
        "app_version": device.app_version,
        "device_model": device.device_model,
        "os_version": device.os_version,
        "last_seen_at": iso_ms(device.last_seen_at),
        "created_at": iso_ms(device.created_at),
    }


@callers("user")
async def register_device(request: web.Request) -> web.Response:
    user_id = request[CALLER].user_id
    registration = parse_registration(parse_json_object(await request.read()))
    now = now_ms()
    # Time-ordered, so a new device lands at the end of the primary key's index instead of at
    # a random page of it: a third less SQLite work per new token.
    device = await request.app[STORE].register_device(
        new_ordered_id(now), user_id, registration, now
    )
    if device is None:
        raise user_gone()
    return json_response({"device": device_json(device)}, status=201)


@callers("user")
async def list_devices(request: web.Request) -> web.Response:
    user_id = request[CALLER].user_id
    devices = await request.app[STORE].list_devices(user_id)
    if devices is None:
        raise user_gone()
    return json_response({"devices": [device_json(device) for device in devices]})


@callers("user")
async def delete_device(request: web.Request) -> web.Response:
    user_id = request[CALLER].user_id
    device_id = path_uuid(request, "Device not found")
    result = await request.app[STORE].delete_device(user_id, device_id)
    if result is DeleteResult.NO_USER:
        raise user_gone()
    if result is DeleteResult.NOT_FOUND:
        raise ApiError(404, "Device not found")
    return json_response({"id": device_id})


routes = [
    web.post("/v1/devices", register_device),
    web.get("/v1/devices", list_devices, allow_head=False),
    web.delete("/v1/devices/{id:[^/]+}", delete_device),
]
