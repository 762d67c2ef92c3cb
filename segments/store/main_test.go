package store

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// UnreachableRedis is the address tests give a Redis client that must fail to
// connect.
const UnreachableRedis = "127.0.0.1:1"

// testRedisLog receives go-redis's own logs, which go to one process-wide logger.
// The pool logs every failed dial; those to UnreachableRedis are what the tests
// asked for, so they are dropped. Anything else still reaches stderr.
type testRedisLog struct{}

func (testRedisLog) Printf(_ context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, UnreachableRedis) {
		return
	}
	fmt.Fprintln(os.Stderr, "redis:", msg)
}

func TestMain(m *testing.M) {
	redis.SetLogger(testRedisLog{})
	os.Exit(m.Run())
}
