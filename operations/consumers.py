"""The live channel: authenticated dashboards receive health, state and alert events."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tradingsite.live import LIVE_GROUP
from tradingsite.websocket import RATE_LIMIT_CLOSE_CODE, InboundFrames


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Authenticates, joins the live group and forwards events — nothing else.

    What a client sends is checked by ``InboundFrames`` (size, JSON, rate); a bad
    frame is answered with ``{"event": "error", "payload": {"code", "detail"}}``.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.frames = InboundFrames()
        await self.channel_layer.group_add(LIVE_GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"event": "hello", "payload": {"user": user.get_username()}})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(LIVE_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None,
                      **kwargs: Any) -> None:
        frame = self.frames.read(text_data, bytes_data)
        if frame.close:
            await self.close(code=RATE_LIMIT_CLOSE_CODE)
        elif frame.error is not None:
            await self.send_json({"event": "error", "payload": frame.error})
        elif not frame.drop:
            await self.receive_json(frame.message)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "ping":
            await self.send_json({"event": "pong", "payload": content.get("payload")})

    async def live_event(self, message: dict[str, Any]) -> None:
        await self.send_json({"event": message["event"], "payload": message["payload"]})
