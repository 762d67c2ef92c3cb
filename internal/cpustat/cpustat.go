// Package cpustat reads, for tests and benchmarks, the CPU times they report per
// span or per message: this process's (getrusage), another process's
// (/proc/<pid>/stat), a redis-server's (INFO cpu) and the whole machine's busy
// time (/proc/stat), and the load average. On a shared machine, CPU time per
// operation moves far less with the load than wall time does. A reading that
// fails fails the test.
package cpustat

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go runs on.
const clockTicks = 100

// Self returns this process's user and system CPU time so far.
func Self(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Process returns process pid's user and system CPU time so far, every thread's.
func Process(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	d, err := process(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func process(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of process %d: %w", pid, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces; the
	// fields after it start with the state (field 3). utime and stime are
	// fields 14 and 15, in clock ticks.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat has %d fields after the name, want at least 13", pid, len(f))
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// Redis returns the redis-server's user and system CPU time (INFO cpu).
func Redis(ctx context.Context, tb testing.TB, c *redis.Client) time.Duration {
	tb.Helper()
	d, err := RedisErr(ctx, c)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// RedisErr is Redis for callers that report the error themselves, such as a
// function run on every master of a Cluster.
func RedisErr(ctx context.Context, c *redis.Client) (time.Duration, error) {
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO cpu on %s: %w", c.Options().Addr, err)
	}
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu on %s: %s: %w", c.Options().Addr, k, err)
			}
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second)), nil
}

// Machine returns the CPU time all cores have spent neither idle nor waiting for
// I/O (the first line of /proc/stat): with the broker on the same machine, it
// shows whether the machine itself is the limit.
func Machine(tb testing.TB) time.Duration {
	tb.Helper()
	d, err := machine()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func machine() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	// cpu user nice system idle iowait irq softirq steal guest guest_nice; guest
	// time is in user already.
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat starts %q, want the cpu line", line)
	}
	var ticks int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue // idle, iowait
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// LoadAvg returns the 1, 5 and 15 minute load averages, as /proc/loadavg has them.
func LoadAvg(tb testing.TB) string {
	tb.Helper()
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		tb.Fatalf("reading /proc/loadavg: %v", err)
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		tb.Fatalf("/proc/loadavg is %q", data)
	}
	return strings.Join(f[:3], " ")
}
