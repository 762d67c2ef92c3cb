package store

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Tests run against miniredis always, and against a real redis-server
// (CREEK_REDIS_ADDR) and a real three-master Redis Cluster
// (CREEK_REDIS_CLUSTER_ADDRS, comma-separated) when those are set. With
// CREEK_REQUIRE_REAL=1 (as .ci/run sets for the integration step) an unset one fails
// the test instead of skipping it.
//
// The real servers are emptied before every case: the single server's database 9
// (FLUSHDB), every database of the Cluster. Point them at servers of their own.

const realRedisDB = 9

// store is one Redis to run a case on.
type store struct {
	client redis.UniversalClient
	// reset empties it.
	reset func(t *testing.T)
}

// eachStore runs fn as a subtest on every Redis available.
func eachStore(t *testing.T, fn func(t *testing.T, s store)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) {
		m := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		fn(t, store{client: c, reset: func(*testing.T) { m.FlushAll() }})
	})
	t.Run("redis", func(t *testing.T) {
		addr := requireEnv(t, "CREEK_REDIS_ADDR")
		c := redis.NewClient(&redis.Options{Addr: addr, DB: realRedisDB})
		t.Cleanup(func() { _ = c.Close() })
		s := store{client: c, reset: func(t *testing.T) {
			if err := c.FlushDB(context.Background()).Err(); err != nil {
				t.Fatalf("FLUSHDB on %s: %v", addr, err)
			}
		}}
		s.reset(t)
		fn(t, s)
	})
	t.Run("cluster", func(t *testing.T) {
		addrs := requireEnv(t, "CREEK_REDIS_CLUSTER_ADDRS")
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
		t.Cleanup(func() { _ = c.Close() })
		s := store{client: c, reset: func(t *testing.T) {
			err := c.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
				return n.FlushAll(ctx).Err()
			})
			if err != nil {
				t.Fatalf("FLUSHALL on the Cluster %s: %v", addrs, err)
			}
		}}
		s.reset(t)
		fn(t, s)
	})
}

func requireEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CREEK_REQUIRE_REAL") == "1" {
			t.Fatalf("%s is not set but CREEK_REQUIRE_REAL=1; start servers with scripts/redis-start and source scripts/.run/redis.env", name)
		}
		t.Skipf("%s not set; run scripts/redis-start and source scripts/.run/redis.env", name)
	}
	return v
}

// allKeys returns every key in the store, over all masters of a Cluster.
func allKeys(t *testing.T, c redis.UniversalClient) []string {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, n redis.Cmdable) error {
		iter := n.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	} else {
		err = scan(ctx, c)
	}
	if err != nil {
		t.Fatalf("listing keys: %v", err)
	}
	slices.Sort(keys)
	return keys
}

// assertAllExpire fails for any key without a TTL.
func assertAllExpire(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	for _, k := range allKeys(t, c) {
		ttl, err := c.PTTL(context.Background(), k).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", k, err)
		}
		if ttl <= 0 {
			t.Errorf("key %s has no TTL (PTTL %v)", k, ttl)
		}
	}
}

// assertOnlyRootFlags fails for any key left but has-root flags and the records
// of flushed spans, which stay for the redelivery window.
func assertOnlyRootFlags(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	for _, k := range allKeys(t, c) {
		// span-buf:[<namespace>:]hrs:<segment key>
		if strings.HasSuffix(k, ":marker") || strings.Contains(k, ":marker:{") {
			// The namespace's markers stay as long as the buffer runs.
			continue
		}
		if before, _, _ := strings.Cut(k, "{"); strings.HasSuffix(before, "fs:") {
			continue
		}
		if before, _, _ := strings.Cut(k, "{"); !strings.HasPrefix(k, "span-buf:hrs:") && !strings.Contains(before, ":hrs:") {
			t.Errorf("key %s left after cleanup; only has-root flags may remain", k)
		}
	}
}
