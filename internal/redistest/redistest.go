// Package redistest holds what the span buffer's tests share about Redis: an
// address that never answers, and a TestMain that keeps go-redis's dial errors for
// it out of the test output.
package redistest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Unreachable is the address tests give a Redis client that must fail to connect.
const Unreachable = "127.0.0.1:1"

// NotUsed returns a client for code that must not talk to Redis.
func NotUsed() *redis.Client { return redis.NewClient(&redis.Options{Addr: Unreachable}) }

// quietLog receives go-redis's own logs, which go to one process-wide logger. The
// pool logs every failed dial; those to Unreachable are what the tests asked for,
// so they are dropped. Anything else still reaches stderr.
type quietLog struct{}

func (quietLog) Printf(_ context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, Unreachable) {
		return
	}
	fmt.Fprintln(os.Stderr, "redis:", msg)
}

// Main is a TestMain: it sets go-redis's logger, which is process-wide, once
// before the tests run.
func Main(m *testing.M) {
	redis.SetLogger(quietLog{})
	os.Exit(m.Run())
}
