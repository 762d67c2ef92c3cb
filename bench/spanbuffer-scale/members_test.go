package spanbufferscale

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creekstream/creek/internal/cpustat"
)

// memberBinary is built once per test binary, into memberDir, which TestMain
// removes.
var (
	buildOnce sync.Once
	memberDir string
	memberBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if memberDir != "" {
		_ = os.RemoveAll(memberDir)
	}
	os.Exit(code)
}

// buildMember builds cmd/spanbuffer-member, once, and returns its path.
func buildMember(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		memberDir, buildErr = os.MkdirTemp("", "spanbuffer-scale-")
		if buildErr != nil {
			return
		}
		memberBin = filepath.Join(memberDir, "spanbuffer-member")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", memberBin, "./cmd/spanbuffer-member").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/spanbuffer-member: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return memberBin
}

// member is one spanbuffer-member process. Its reader goroutine parses its report
// lines into the counts below (guarded by mu), sends on the fleet's changed
// channel after each, waits for the process once its stdout ends, sets err and
// closes done.
type member struct {
	name   string
	cmd    *exec.Cmd
	stderr string // the file its stderr goes to
	done   chan struct{}
	err    error

	mu                sync.Mutex
	acked, ingested   int64
	assigned, revoked int
	badLine           string // the first report line it could not parse
}

// counts returns what the member has reported so far.
func (m *member) counts() (acked, ingested int64, rebalances int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acked, m.ingested, m.assigned + m.revoked
}

func (m *member) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// tail returns the last lines of the member's stderr, for failure messages.
func (m *member) tail() string {
	b, _ := os.ReadFile(m.stderr)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// readReport parses the member's stdout until it ends.
func (m *member) readReport(sc *bufio.Scanner, changed chan<- struct{}) {
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		m.mu.Lock()
		switch {
		case len(f) == 3 && f[0] == "progress":
			a, errA := strconv.ParseInt(f[1], 10, 64)
			i, errI := strconv.ParseInt(f[2], 10, 64)
			if errA == nil && errI == nil {
				m.acked, m.ingested = a, i
			} else if m.badLine == "" {
				m.badLine = sc.Text()
			}
		case len(f) == 2 && f[0] == "rebalance" && f[1] == "assigned":
			m.assigned++
		case len(f) == 2 && f[0] == "rebalance" && f[1] == "revoked":
			m.revoked++
		default:
			if m.badLine == "" {
				m.badLine = sc.Text()
			}
		}
		m.mu.Unlock()
		select {
		case changed <- struct{}{}:
		default:
		}
	}
}

// cpu returns the member's user and system CPU time so far, from /proc/<pid>/stat.
func (m *member) cpu(tb testing.TB) time.Duration {
	tb.Helper()
	return cpustat.Process(tb, m.cmd.Process.Pid)
}

// fleet is the members of one run. changed gets a value (without blocking, so it
// holds at most one) whenever a member reports or exits.
type fleet struct {
	tb      testing.TB
	members []*member
	changed chan struct{}
	waiters sync.WaitGroup
}

// startFleet starts n members of bin with args, each logging to a file in dir. A
// cleanup kills every member still running when the test ends, and waits for it.
func startFleet(tb testing.TB, bin, dir string, n int, args ...string) *fleet {
	tb.Helper()
	f := &fleet{tb: tb, changed: make(chan struct{}, 1)}
	tb.Cleanup(func() {
		for _, m := range f.members {
			if !m.exited() {
				_ = m.cmd.Process.Kill()
			}
		}
		f.waiters.Wait()
	})
	for i := range n {
		if err := f.start(fmt.Sprintf("member%d", i), bin, dir, args); err != nil {
			tb.Fatal(err)
		}
	}
	return f
}

func (f *fleet) start(name, bin, dir string, args []string) error {
	m := &member{name: name, stderr: filepath.Join(dir, name+".stderr"), done: make(chan struct{})}
	errf, err := os.Create(m.stderr)
	if err != nil {
		return err
	}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stderr = errf
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		_ = errf.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := m.cmd.Start(); err != nil {
		_ = errf.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	f.members = append(f.members, m)
	f.waiters.Add(1)
	go func() {
		defer f.waiters.Done()
		m.readReport(bufio.NewScanner(stdout), f.changed)
		// Wait only once stdout is read to its end, as exec.Cmd.StdoutPipe asks.
		m.err = m.cmd.Wait()
		_ = errf.Close()
		close(m.done)
		select {
		case f.changed <- struct{}{}:
		default:
		}
	}()
	return nil
}

// totals returns the counts summed over the members.
func (f *fleet) totals() (acked, ingested int64, rebalances int) {
	for _, m := range f.members {
		a, i, r := m.counts()
		acked, ingested, rebalances = acked+a, ingested+i, rebalances+r
	}
	return acked, ingested, rebalances
}

// checkRunning fails the benchmark if a member has exited or wrote a line it
// does not understand.
func (f *fleet) checkRunning(when string) {
	f.tb.Helper()
	for _, m := range f.members {
		if m.exited() {
			f.tb.Fatalf("%s exited %s (%v); stderr:\n%s", m.name, when, m.err, m.tail())
		}
		m.mu.Lock()
		bad := m.badLine
		m.mu.Unlock()
		if bad != "" {
			f.tb.Fatalf("%s reported %q, which is no report line", m.name, bad)
		}
	}
}

// cpu returns the members' CPU time, summed.
func (f *fleet) cpu() time.Duration {
	f.tb.Helper()
	var sum time.Duration
	for _, m := range f.members {
		sum += m.cpu(f.tb)
	}
	return sum
}

// stop sends SIGTERM to every member and checks each exits 0 within d.
func (f *fleet) stop(d time.Duration) {
	f.tb.Helper()
	for _, m := range f.members {
		if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !m.exited() {
			f.tb.Errorf("SIGTERM to %s: %v", m.name, err)
		}
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for _, m := range f.members {
		select {
		case <-m.done:
			if m.err != nil {
				f.tb.Errorf("%s exited with %v after SIGTERM, want a clean exit; stderr:\n%s", m.name, m.err, m.tail())
			}
		case <-deadline.C:
			f.tb.Fatalf("%s did not exit within %v of SIGTERM; stderr:\n%s", m.name, d, m.tail())
		}
	}
}
