package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ErrMemoryInfoUnavailable is returned by MemoryRatio when Redis does not report its
// memory (miniredis, for one).
var ErrMemoryInfoUnavailable = errors.New("store: Redis does not report used_memory and a memory limit")

// MemoryRatio returns Redis's used memory divided by the memory it may use: maxmemory
// when set, else the machine's total memory. On a Cluster it is the highest ratio of
// any master. The flusher compares it with max-memory-percentage for backpressure.
func (b *Buffer) MemoryRatio(ctx context.Context) (float64, error) {
	if c, ok := b.client.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		var worst float64
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			r, err := memoryRatio(ctx, node)
			mu.Lock()
			worst = max(worst, r)
			mu.Unlock()
			return err
		})
		return worst, err
	}
	return memoryRatio(ctx, b.client)
}

func memoryRatio(ctx context.Context, c redis.Cmdable) (float64, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("store: INFO memory: %w", err)
	}
	fields := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok {
			fields[k] = v
		}
	}
	used, err1 := strconv.ParseFloat(fields["used_memory"], 64)
	limit, err2 := strconv.ParseFloat(fields["maxmemory"], 64)
	if err2 == nil && limit == 0 {
		limit, err2 = strconv.ParseFloat(fields["total_system_memory"], 64)
	}
	if err1 != nil || err2 != nil || limit <= 0 {
		return 0, ErrMemoryInfoUnavailable
	}
	return used / limit, nil
}
