package chaos

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/kafkatest"
)

// EnvChaos turns the suite on: "1" runs it at the size CI affords, "full" at the
// size of the reliability issue. Unset, every case skips: the suite stops and
// restarts the broker, so it must not run beside other packages' tests.
const EnvChaos = "CREEK_CHAOS"

// size is how much load a run puts through each case.
type size struct {
	name string
	// ids is how many unique ids each processor case produces, at rate per second.
	ids, rate int
	// kills is how many times the kill case kill -9s a member.
	kills int
	// churnEvery spaces the joins and leaves of the churn case.
	churnEvery time.Duration
	// outage is how long the broker stays down between its stop and its start.
	outage time.Duration
	// traces and spanRate size the span buffer case; spanKills is its kill -9 count.
	traces, spanRate, spanKills int
}

var (
	ciSize   = size{name: "ci", ids: 30000, rate: 1500, kills: 3, churnEvery: 1500 * time.Millisecond, outage: 30 * time.Second, traces: 1500, spanRate: 1500, spanKills: 3}
	fullSize = size{name: "full", ids: 200000, rate: 5000, kills: 3, churnEvery: 2 * time.Second, outage: 30 * time.Second, traces: 12000, spanRate: 2000, spanKills: 6}
)

// suite is what every case shares: the size, the broker, the binaries built once.
type suite struct {
	size     size
	brokers  []string
	consumer string // path of the chaos-consumer binary
	spanbuf  string // path of the chaos-spanbuffer binary
	eosBin   string // path of the chaos-eos binary
	// scripts is the repository's scripts directory, for the broker outage.
	scripts string
}

// requireReal reports whether a missing service fails the suite instead of
// skipping it.
func requireReal() bool { return os.Getenv(kafkatest.EnvRequireReal) == "1" }

// newSuite skips t unless the suite is turned on and a real broker is named, and
// builds the process binaries into t.TempDir().
func newSuite(t *testing.T) *suite {
	t.Helper()
	var sz size
	switch v := os.Getenv(EnvChaos); v {
	case "":
		t.Skipf("chaos: set %s=1 (CI size) or %s=full to run the chaos suite; it stops and restarts the broker, so run it alone", EnvChaos, EnvChaos)
	case "1", "ci":
		sz = ciSize
	case "full":
		sz = fullSize
	default:
		t.Fatalf("chaos: %s=%q; want 1, ci or full", EnvChaos, v)
	}
	brokers := kafkatest.RealBrokers()
	if len(brokers) == 0 {
		if requireReal() {
			t.Fatalf("chaos: %s=1 but %s is not set; start one with scripts/kafka-start", kafkatest.EnvRequireReal, kafkatest.EnvBrokers)
		}
		t.Skipf("chaos: needs a real broker; set %s (scripts/kafka-start)", kafkatest.EnvBrokers)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{size: sz, brokers: brokers, scripts: filepath.Join(root, "scripts")}
	bin := t.TempDir()
	s.consumer = filepath.Join(bin, "chaos-consumer")
	s.spanbuf = filepath.Join(bin, "chaos-spanbuffer")
	s.eosBin = filepath.Join(bin, "chaos-eos")
	for out, pkg := range map[string]string{s.consumer: "./cmd/chaos-consumer", s.spanbuf: "./cmd/chaos-spanbuffer", s.eosBin: "./cmd/chaos-eos"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("chaos: go build %s: %v\n%s", pkg, err, b)
		}
	}
	t.Logf("chaos: size %s (%+v), broker %v", sz.name, sz, brokers)
	return s
}

// outFile in the arguments of fleet.start is replaced by the process's own file.
const outFile = "{out}"

// proc is one run of a child process. done is closed when it has exited; err is
// its exit error, set before done is closed.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     string // the file it records what it processed in
	stderr  string // the file its stderr goes to
	done    chan struct{}
	err     error
	stopped atomic.Bool // the test asked it to stop or killed it
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the last lines of the process's stderr, for failure messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.stderr)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// fleet runs the child processes of one case. mu guards procs and unexpected;
// every process has a goroutine that waits for it and adds an exit the test did
// not ask for to unexpected, which checkAlive reports and empties.
type fleet struct {
	t          *testing.T
	dir        string
	mu         sync.Mutex
	procs      []*proc
	unexpected []*proc
	waiters    sync.WaitGroup
}

func newFleet(t *testing.T) *fleet {
	f := &fleet{t: t, dir: t.TempDir()}
	t.Cleanup(func() {
		// A case that failed half way leaves processes running: kill them all.
		for _, p := range f.all() {
			if !p.exited() {
				p.stopped.Store(true)
				_ = p.cmd.Process.Kill()
			}
		}
		f.waiters.Wait()
	})
	return f
}

// start runs bin with args, in which outFile stands for a fresh file of the
// process's own, and returns the process.
func (f *fleet) start(name, bin string, args ...string) *proc {
	f.t.Helper()
	f.mu.Lock()
	n := len(f.procs)
	f.mu.Unlock()
	p := &proc{
		name:   fmt.Sprintf("%s#%d", name, n),
		out:    filepath.Join(f.dir, fmt.Sprintf("out-%03d.log", n)),
		stderr: filepath.Join(f.dir, fmt.Sprintf("stderr-%03d.log", n)),
		done:   make(chan struct{}),
	}
	errf, err := os.Create(p.stderr)
	if err != nil {
		f.t.Fatal(err)
	}
	args = slices.Clone(args)
	for i, a := range args {
		if a == outFile {
			args[i] = p.out
		}
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = errf
	p.cmd.Stdout = errf
	if err := p.cmd.Start(); err != nil {
		errf.Close()
		f.t.Fatalf("chaos: start %s: %v", p.name, err)
	}
	f.mu.Lock()
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	f.waiters.Add(1)
	go func() {
		defer f.waiters.Done()
		p.err = p.cmd.Wait()
		errf.Close()
		close(p.done)
		if !p.stopped.Load() {
			f.mu.Lock()
			f.unexpected = append(f.unexpected, p)
			f.mu.Unlock()
		}
	}()
	return p
}

func (f *fleet) all() []*proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.procs)
}

// running returns the processes that have not exited and were not told to stop.
func (f *fleet) running() []*proc {
	var out []*proc
	for _, p := range f.all() {
		if !p.exited() && !p.stopped.Load() {
			out = append(out, p)
		}
	}
	return out
}

// kill sends SIGKILL to p and waits until it has exited.
func (f *fleet) kill(p *proc) {
	f.t.Helper()
	p.stopped.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		f.t.Fatalf("chaos: kill -9 %s: %v", p.name, err)
	}
	f.await(p, 10*time.Second)
}

// term sends SIGTERM to p; the caller awaits its exit with await or stopAll.
func (f *fleet) term(p *proc) {
	f.t.Helper()
	p.stopped.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		f.t.Fatalf("chaos: kill -TERM %s: %v", p.name, err)
	}
}

func (f *fleet) await(p *proc, d time.Duration) {
	f.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		f.t.Fatalf("chaos: %s did not exit within %v of its signal; stderr:\n%s", p.name, d, p.tail())
	}
}

// stopAll sends SIGTERM to every running process and checks that each exits 0
// within d: a clean shutdown.
func (f *fleet) stopAll(d time.Duration) {
	f.t.Helper()
	ps := f.running()
	for _, p := range ps {
		f.term(p)
	}
	for _, p := range ps {
		f.await(p, d)
		if p.err != nil {
			f.t.Errorf("chaos: %s exited with %v after SIGTERM, want a clean exit; stderr:\n%s", p.name, p.err, p.tail())
		}
	}
}

// checkGraceful checks that every process that was sent SIGTERM and has exited
// exited 0.
func (f *fleet) checkGraceful(terminated []*proc) {
	f.t.Helper()
	for _, p := range terminated {
		if p.exited() && p.err != nil {
			f.t.Errorf("chaos: %s exited with %v after SIGTERM, want a clean exit; stderr:\n%s", p.name, p.err, p.tail())
		}
	}
}

// checkAlive fails the test for every process that exited without being asked to.
func (f *fleet) checkAlive(when string) {
	f.t.Helper()
	f.mu.Lock()
	exited := f.unexpected
	f.unexpected = nil
	f.mu.Unlock()
	for _, p := range exited {
		f.t.Errorf("chaos: %s exited on its own %s (%v); stderr:\n%s", p.name, when, p.err, p.tail())
	}
}

// processing is one line of a consumer's record: a message it processed.
type processing struct {
	partition int32
	offset    int64
	value     string
	at        int64 // unix nanoseconds
	proc      int   // index of the process in the fleet
}

// tally reads the consumers' files as they grow. Only the test goroutine uses it.
type tally struct {
	read     map[string]int64 // bytes of each file already parsed
	lines    []processing
	distinct map[[2]int64]int
}

func newTally() *tally {
	return &tally{read: make(map[string]int64), distinct: make(map[[2]int64]int)}
}

// update parses what the processes of f appended since the last call.
func (ta *tally) update(t *testing.T, f *fleet) {
	t.Helper()
	for i, p := range f.all() {
		fh, err := os.Open(p.out)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.Seek(ta.read[p.out], io.SeekStart); err != nil {
			fh.Close()
			t.Fatal(err)
		}
		b, err := io.ReadAll(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		// Only whole lines: a writer may be half way through one.
		b = b[:bytes.LastIndexByte(b, '\n')+1]
		ta.read[p.out] += int64(len(b))
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			pr, err := parseLine(sc.Text(), i)
			if err != nil {
				t.Fatalf("chaos: %s: %v", p.out, err)
			}
			ta.lines = append(ta.lines, pr)
			ta.distinct[[2]int64{int64(pr.partition), pr.offset}]++
		}
	}
}

func parseLine(s string, proc int) (processing, error) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return processing{}, fmt.Errorf("bad line %q", s)
	}
	p, err1 := strconv.ParseInt(f[0], 10, 32)
	o, err2 := strconv.ParseInt(f[1], 10, 64)
	at, err3 := strconv.ParseInt(f[3], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return processing{}, fmt.Errorf("bad line %q: %w", s, err)
	}
	return processing{partition: int32(p), offset: o, value: f[2], at: at, proc: proc}, nil
}

// waitProcessed re-reads the files until every position below ends was processed,
// failing the test after d; f's processes must stay alive meanwhile.
func (ta *tally) waitProcessed(t *testing.T, f *fleet, ends map[int32]int64, d time.Duration) {
	t.Helper()
	total := 0
	for _, e := range ends {
		total += int(e)
	}
	deadline := time.Now().Add(d)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ta.update(t, f)
		f.checkAlive("while the rest was being processed")
		if len(ta.distinct) >= total {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("chaos: after %v, %d of %d positions processed", d, len(ta.distinct), total)
		}
		<-tick.C
	}
}

// commitLog samples a group's committed offsets on its own goroutine, so that the
// test can tell a redelivery of what was in flight from one of what had been
// committed. mu guards samples.
type commitLog struct {
	mu      sync.Mutex
	samples []commitSample
	cancel  context.CancelFunc
	done    chan struct{}
}

type commitSample struct {
	at        int64 // unix nanoseconds, taken after the answer came
	committed map[int32]int64
}

func startCommitLog(cl *kafkatest.Client, group, topic string) *commitLog {
	ctx, cancel := context.WithCancel(context.Background())
	c := &commitLog{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
			m, err := cl.CommittedOffsets(qctx, group, topic)
			qcancel()
			// While the broker is down there is nothing to sample.
			if err == nil {
				c.mu.Lock()
				c.samples = append(c.samples, commitSample{at: time.Now().UnixNano(), committed: m})
				c.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return c
}

func (c *commitLog) stop() []commitSample {
	c.cancel()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.samples)
}

// committedNow returns the group's committed offsets, retrying for up to d.
func committedNow(t *testing.T, cl *kafkatest.Client, group, topic string, d time.Duration) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := cl.CommittedOffsets(qctx, group, topic)
		qcancel()
		if err == nil {
			return m
		}
		if ctx.Err() != nil {
			t.Fatalf("chaos: committed offsets of %s: %v", group, err)
		}
	}
}

// inFlight counts what process proc processed at or past the committed offsets:
// what a restart will process again.
func inFlight(lines []processing, proc int, committed map[int32]int64) int {
	n := 0
	for _, l := range lines {
		if l.proc == proc && l.offset >= committed[l.partition] {
			n++
		}
	}
	return n
}

// producer writes the ids 0 to n-1 ("id-<i>") at about rate per second over the
// partitions of topic, on its own goroutine. While held it writes nothing. A batch
// that fails is written again; the read-back of the input topic, not this count,
// is what the accounting trusts.
type producer struct {
	produced atomic.Int64
	mu       sync.Mutex
	held     bool
	resume   chan struct{}
	cancel   context.CancelFunc
	done     chan error
}

func startProducer(cl *kafkatest.Client, topic string, partitions int32, n, rate int) *producer {
	ctx, cancel := context.WithCancel(context.Background())
	pr := &producer{cancel: cancel, done: make(chan error, 1), resume: make(chan struct{})}
	go func() { pr.done <- pr.run(ctx, cl, topic, partitions, n, rate) }()
	return pr
}

func (pr *producer) run(ctx context.Context, cl *kafkatest.Client, topic string, partitions int32, n, rate int) error {
	step := max(rate/10, 1)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < n; {
		pr.mu.Lock()
		held, resume := pr.held, pr.resume
		pr.mu.Unlock()
		if held {
			select {
			case <-resume:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		end := min(i+step, n)
		recs := make([]*kgo.Record, 0, end-i)
		for id := i; id < end; id++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(id) % partitions, Value: []byte("id-" + strconv.Itoa(id))})
		}
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		err := cl.Produce(pctx, recs...)
		pcancel()
		if err == nil {
			pr.produced.Add(int64(len(recs)))
			i = end
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// hold stops producing after the batch under way; release resumes.
func (pr *producer) hold() {
	pr.mu.Lock()
	pr.held = true
	pr.mu.Unlock()
}

func (pr *producer) release() {
	pr.mu.Lock()
	pr.held = false
	close(pr.resume)
	pr.resume = make(chan struct{})
	pr.mu.Unlock()
}

// waitProduced waits until at least n ids were produced or the producer ended.
func (pr *producer) waitProduced(t *testing.T, n int64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for pr.produced.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("chaos: %d of %d ids produced after %v", pr.produced.Load(), n, d)
		}
		<-tick.C
	}
}

// wait waits for the producer to finish all ids.
func (pr *producer) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-pr.done:
		if err != nil {
			t.Fatalf("chaos: producer: %v", err)
		}
	case <-time.After(d):
		pr.cancel()
		t.Fatalf("chaos: the producer did not finish within %v (%d produced)", d, pr.produced.Load())
	}
}

// accounting is a case's result: what went in, what came out, what was lost or
// done twice.
type accounting struct {
	in, out, lost, duplicates int
	// allowed is what was in flight since the last commit at the kills (or the
	// outage): the duplicates the case may make.
	allowed int
	// rewound counts processings of a position after the group's committed offset
	// had been seen past it: redeliveries of work that was committed.
	rewound int
	// wrong counts lines whose value is not the input's at that position.
	wrong int
}

func (a accounting) String() string {
	return fmt.Sprintf("in %d / out %d / lost %d / duplicates %d (allowed: in flight since the last commit %d; re-read after commit %d; wrong value %d)",
		a.in, a.out, a.lost, a.duplicates, a.allowed, a.rewound, a.wrong)
}

// account reads the input topic back and compares it with what the processes did.
func account(t *testing.T, cl *kafkatest.Client, topic string, ends map[int32]int64, lines []processing, commits []commitSample) accounting {
	t.Helper()
	total := 0
	for _, e := range ends {
		total += int(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	recs, err := cl.Read(ctx, topic, total)
	if err != nil {
		t.Fatalf("chaos: reading the input back: %v", err)
	}
	input := make(map[[2]int64]string, len(recs))
	for _, r := range recs {
		input[[2]int64{int64(r.Partition), r.Offset}] = string(r.Value)
	}
	return tallyUp(input, lines, commits)
}

// tallyUp compares input, the value at each position, with what the processes
// recorded.
func tallyUp(input map[[2]int64]string, lines []processing, commits []commitSample) accounting {
	a := accounting{in: len(input)}
	byPos := make(map[[2]int64][]processing, len(input))
	for _, l := range lines {
		k := [2]int64{int64(l.partition), l.offset}
		if v, ok := input[k]; !ok || v != l.value {
			a.wrong++
		}
		byPos[k] = append(byPos[k], l)
	}
	for k := range input {
		if len(byPos[k]) == 0 {
			a.lost++
		}
	}
	a.out = a.in - a.lost
	for k, ps := range byPos {
		a.duplicates += len(ps) - 1
		slices.SortFunc(ps, func(x, y processing) int { return cmp.Compare(x.at, y.at) })
		for _, p := range ps[1:] {
			if committedPastBefore(commits, int32(k[0]), k[1], p.at) {
				a.rewound++
			}
		}
	}
	return a
}

// committedPastBefore reports whether a sample taken before at had partition p
// committed past offset o.
func committedPastBefore(commits []commitSample, p int32, o, at int64) bool {
	for _, c := range commits {
		if c.at >= at {
			return false
		}
		if c.committed[p] > o {
			return true
		}
	}
	return false
}

// check logs a and fails the test on loss, on a wrong value, on a re-read of
// committed work and on more duplicates than were in flight at the kills.
func (a accounting) check(t *testing.T, label string) {
	t.Helper()
	t.Logf("chaos: %s: %s", label, a)
	if a.lost > 0 {
		t.Errorf("chaos: %s: %d messages lost", label, a.lost)
	}
	if a.wrong > 0 {
		t.Errorf("chaos: %s: %d processed values differ from the input at their position", label, a.wrong)
	}
	if a.rewound > 0 {
		t.Errorf("chaos: %s: %d messages processed again after the group had committed past them", label, a.rewound)
	}
	if a.duplicates > a.allowed {
		t.Errorf("chaos: %s: %d duplicates, more than the %d in flight since the last commit", label, a.duplicates, a.allowed)
	}
}

// endOffsets returns the end offsets of topic.
func endOffsets(t *testing.T, cl *kafkatest.Client, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := cl.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("chaos: end offsets of %s: %v", topic, err)
	}
	return ends
}
