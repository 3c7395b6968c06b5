package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// RecommendedPersistence is the Redis setting fleet mode wants: an
// append-only file fsync'd every second (at most ~1 s of writes lost on a
// crash), with RDB snapshots kept as a second line.
const RecommendedPersistence = "appendonly yes, appendfsync everysec (redis.conf or CONFIG SET appendonly yes; CONFIG REWRITE)"

// Durability describes a Redis server's persistence.
type Durability struct {
	// AOF: appendonly is on. AppendFsync is its fsync policy.
	AOF         bool
	AppendFsync string
	// RDB: snapshot rules are configured (save is not empty). RDBKnown is
	// false when CONFIG is unavailable (managed Redis) and INFO could not
	// tell.
	RDB      bool
	RDBKnown bool
	// Warning is empty when the setting is safe enough, otherwise a
	// sentence for the operator's log. Severe marks the case with neither
	// AOF nor RDB: a Redis restart loses every device.
	Warning string
	Severe  bool
}

// CheckDurability reads the persistence settings (CONFIG GET, falling back
// to INFO persistence where CONFIG is disabled) of the server, or of every
// master of a Cluster (the worst one is reported). The caller logs
// Warning; only a failure to ask Redis at all is an error.
func CheckDurability(ctx context.Context, c goredis.UniversalClient) (Durability, error) {
	if cc, ok := c.(*goredis.ClusterClient); ok {
		var worst Durability
		first := true
		var mu sync.Mutex
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
			d, err := checkOne(ctx, m)
			if err != nil {
				return err
			}
			mu.Lock()
			if first || rank(d) > rank(worst) {
				worst, first = d, false
			}
			mu.Unlock()
			return nil
		})
		return worst, err
	}
	return checkOne(ctx, c)
}

func rank(d Durability) int {
	switch {
	case d.Severe:
		return 2
	case d.Warning != "":
		return 1
	}
	return 0
}

func checkOne(ctx context.Context, c goredis.Cmdable) (Durability, error) {
	cfg := map[string]string{}
	var cfgErr error
	for _, p := range []string{"appendonly", "appendfsync", "save"} {
		v, err := c.ConfigGet(ctx, p).Result()
		if err != nil {
			cfgErr = err
			break
		}
		for k, val := range v {
			cfg[k] = val
		}
	}
	info, infoErr := c.Info(ctx, "persistence").Result()
	if cfgErr != nil && infoErr != nil {
		return Durability{}, fmt.Errorf("redis: read persistence settings: CONFIG: %v; INFO: %w", cfgErr, infoErr)
	}
	if cfgErr != nil {
		cfg = nil
	}
	return assessDurability(cfg, info), nil
}

// assessDurability decides from CONFIG values (nil when CONFIG is
// unavailable) and the INFO persistence text.
func assessDurability(cfg map[string]string, info string) Durability {
	var d Durability
	fields := infoFields(info)
	if cfg != nil {
		d.AOF = cfg["appendonly"] == "yes"
		d.AppendFsync = cfg["appendfsync"]
		d.RDB = strings.TrimSpace(cfg["save"]) != ""
		d.RDBKnown = true
	} else {
		d.AOF = fields["aof_enabled"] == "1"
	}
	switch {
	case !d.AOF && d.RDBKnown && !d.RDB:
		d.Severe = true
		d.Warning = "Redis has neither AOF nor RDB persistence: a Redis restart loses every device and every account must pair again; set " + RecommendedPersistence
	case !d.AOF && !d.RDBKnown:
		d.Warning = "Redis AOF is off and its RDB setting cannot be read (CONFIG is disabled); unless the provider persists the data, a restart loses every device; recommended: " + RecommendedPersistence
	case !d.AOF:
		d.Warning = "Redis persists only RDB snapshots: a crash loses device changes (new pairings) made since the last snapshot; recommended: " + RecommendedPersistence
	case d.AppendFsync == "no":
		d.Warning = "Redis AOF is on with appendfsync no: a crash may lose ~30 s of device changes; recommended: " + RecommendedPersistence
	}
	return d
}
