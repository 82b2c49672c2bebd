package mpauthx

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// startCluster starts the cache on a Redis Cluster.
func (lc *localCache) startCluster(_ *redis.ClusterClient) {
	lc.log.LogAttrs(context.Background(), slog.LevelWarn, "mpauthx: Config.LocalCache is off: Redis Cluster; every check reads Redis")
	lc.cancel()
}
