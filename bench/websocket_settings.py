"""Settings for the websocket benchmark's server: the platform's, with a chosen Redis layer.

``BENCH_CHANNEL_LAYER=core`` is channels_redis' default layer (what ``REDIS_URL`` gives
the platform); ``pubsub`` is its Redis pub/sub layer, compared by the benchmark.
"""

from tradingsite.env import env_str
from tradingsite.settings import *  # noqa: F403
from tradingsite.settings import REDIS_URL

LAYER_BACKENDS = {"core": "channels_redis.core.RedisChannelLayer",
                  "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer"}


def bench_channel_layers(kind: str, redis_url: str, prefix: str) -> dict:
    return {"default": {"BACKEND": LAYER_BACKENDS[kind],
                        "CONFIG": {"hosts": [redis_url], "prefix": prefix}}}


CHANNEL_LAYERS = bench_channel_layers(env_str("BENCH_CHANNEL_LAYER", "core"), REDIS_URL,
                                      env_str("CHANNELS_PREFIX", "bench_ws"))
