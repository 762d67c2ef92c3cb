package spanbuffere2e

import (
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// logCommandStats logs INFO commandstats, per span, busiest first.
func logCommandStats(b *testing.B, rdb *redis.Client, spans int) {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatalf("INFO commandstats: %v", err)
	}
	type stat struct {
		name        string
		calls, usec float64
	}
	var stats []stat
	var total float64
	for _, line := range strings.Split(info, "\n") {
		name, fields, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		st := stat{name: strings.TrimPrefix(name, "cmdstat_")}
		for _, kv := range strings.Split(fields, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				st.calls = f
			case "usec":
				st.usec = f
			}
		}
		stats = append(stats, st)
		total += st.usec
	}
	slices.SortFunc(stats, func(x, y stat) int { return cmp.Compare(y.usec, x.usec) })
	var out strings.Builder
	fmt.Fprintf(&out, "INFO commandstats per span (%d spans; a script's commands count in EVALSHA too):\n", spans)
	fmt.Fprintf(&out, "  %-16s %10s %10s\n", "command", "calls", "µs")
	for _, st := range stats {
		fmt.Fprintf(&out, "  %-16s %10.3f %10.3f\n", st.name, st.calls/float64(spans), st.usec/float64(spans))
	}
	fmt.Print(out.String()) // not b.Log: a benchmark's log is cut to a few lines
}

// slowlog collects every command's server time from SLOWLOG while the
// benchmark runs: unlike commandstats it tells the Lua scripts apart (by their
// SHA). Its goroutine polls until stop.
type slowlog struct {
	rdb     *redis.Client
	scripts map[string]string // sha -> script file
	cancel  context.CancelFunc
	done    chan struct{}

	mu     sync.Mutex // guards what follows
	byName map[string]*slowStat
	full   int               // polls that found the log full: entries were lost
	prev   map[string]string // the settings to restore
}

type slowStat struct {
	calls int64
	usec  int64
}

const slowlogLen = 200000

func startSlowlog(ctx context.Context, b *testing.B, rdb *redis.Client) *slowlog {
	s := &slowlog{rdb: rdb, scripts: map[string]string{}, byName: map[string]*slowStat{}, prev: map[string]string{}, done: make(chan struct{})}
	files, _ := filepath.Glob("../../segments/store/*.lua")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		sum := sha1.Sum(src)
		s.scripts[hex.EncodeToString(sum[:])] = filepath.Base(f)
	}
	for _, k := range []string{"slowlog-log-slower-than", "slowlog-max-len"} {
		v, err := rdb.ConfigGet(ctx, k).Result()
		if err != nil {
			b.Fatal(err)
		}
		s.prev[k] = v[k]
	}
	for k, v := range map[string]string{"slowlog-max-len": strconv.Itoa(slowlogLen), "slowlog-log-slower-than": "0"} {
		if err := rdb.ConfigSet(ctx, k, v).Err(); err != nil {
			b.Fatal(err)
		}
	}
	if err := rdb.SlowLogReset(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	pollCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			s.poll(ctx)
			select {
			case <-pollCtx.Done():
				s.poll(ctx)
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// poll takes the log's entries and empties it, in one transaction so that none
// falls between the two.
func (s *slowlog) poll(ctx context.Context) {
	var get *redis.SlowLogCmd
	if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		get = p.SlowLogGet(ctx, -1)
		p.SlowLogReset(ctx)
		return nil
	}); err != nil {
		return
	}
	entries := get.Val()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(entries) >= slowlogLen {
		s.full++
	}
	for _, e := range entries {
		name := "?"
		if len(e.Args) > 0 {
			name = strings.ToLower(e.Args[0])
		}
		if (name == "evalsha" || name == "evalsha_ro") && len(e.Args) > 1 {
			if f, ok := s.scripts[strings.ToLower(e.Args[1])]; ok {
				name = "evalsha " + f
			}
		}
		if name == "slowlog" || name == "multi" || name == "exec" {
			continue
		}
		st := s.byName[name]
		if st == nil {
			st = &slowStat{}
			s.byName[name] = st
		}
		st.calls++
		st.usec += e.Duration.Microseconds()
	}
}

// stop ends the polling, restores the settings and logs the figures per span.
func (s *slowlog) stop(b *testing.B, spans int) {
	s.cancel()
	<-s.done
	ctx := context.Background()
	for k, v := range s.prev {
		_ = s.rdb.ConfigSet(ctx, k, v).Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	type row struct {
		name string
		st   slowStat
	}
	var rows []row
	var total int64
	for n, st := range s.byName {
		rows = append(rows, row{n, *st})
		total += st.usec
	}
	slices.SortFunc(rows, func(x, y row) int { return cmp.Compare(y.st.usec, x.st.usec) })
	var out strings.Builder
	fmt.Fprintf(&out, "SLOWLOG per span, commands and scripts, a script's own commands logged too (%d spans; %d polls found the log full and lost entries), total %.2f µs/span:\n", spans, s.full, float64(total)/float64(spans))
	fmt.Fprintf(&out, "  %-24s %10s %10s %6s\n", "command", "calls", "µs", "share")
	for _, r := range rows {
		fmt.Fprintf(&out, "  %-24s %10.3f %10.3f %5.1f%%\n", r.name, float64(r.st.calls)/float64(spans), float64(r.st.usec)/float64(spans), 100*float64(r.st.usec)/float64(total))
	}
	fmt.Print(out.String()) // not b.Log: a benchmark's log is cut to a few lines
}
