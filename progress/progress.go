// Package progress reports the progress of long work (downloads, bundle
// writes, imports, uploads to nodes). Feature packages take a Reporter and
// never decide how it is drawn: cmd/ injects bars on a terminal, plain
// lines otherwise, or Discard.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Reporter starts tasks. Implementations are safe for concurrent use.
type Reporter interface {
	// Start begins a task named name of total bytes (total < 0: unknown).
	Start(name string, total int64) Task
	// Wait waits for every bar to be drawn for the last time. Call it once,
	// when all tasks are done, before writing anything else to the terminal.
	Wait()
}

// Task is one unit of long work. Its methods are safe for concurrent use.
type Task interface {
	// Add records n more bytes done.
	Add(n int64)
	// SetCurrent records the total done so far (a resumed transfer).
	SetCurrent(n int64)
	// Done ends the task; err is nil on success.
	Done(err error)
}

// Discard is a Reporter that reports nothing.
var Discard Reporter = discard{}

type discard struct{}

func (discard) Start(string, int64) Task { return discardTask{} }
func (discard) Wait()                    {}

type discardTask struct{}

func (discardTask) Add(int64)        {}
func (discardTask) SetCurrent(int64) {}
func (discardTask) Done(error)       {}

// Writer wraps w so that everything written through it is added to t.
func Writer(w io.Writer, t Task) io.Writer { return countWriter{w, t} }

// Reader wraps r so that everything read through it is added to t.
func Reader(r io.Reader, t Task) io.Reader { return countReader{r, t} }

type countWriter struct {
	w io.Writer
	t Task
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.t.Add(int64(n))
	return n, err
}

type countReader struct {
	r io.Reader
	t Task
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.Add(int64(n))
	return n, err
}

// CheckVolume forwards to the wrapped reader, so that a split bundle's
// reader can still name a damaged volume through the progress wrapper (see
// bundle.VolumeChecker).
func (c countReader) CheckVolume() error {
	if vc, ok := c.r.(interface{ CheckVolume() error }); ok {
		return vc.CheckVolume()
	}
	return nil
}

// Lines returns a Reporter that writes plain lines to w: one when a task
// starts, one at most every interval while it runs, one when it ends. It is
// meant for logs and pipes, where bars would be noise.
func Lines(w io.Writer, interval time.Duration) Reporter {
	return &lines{w: w, interval: interval}
}

type lines struct {
	mu       sync.Mutex
	w        io.Writer
	interval time.Duration
}

func (l *lines) Wait() {}

func (l *lines) printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, a...)
}

func (l *lines) Start(name string, total int64) Task {
	t := &lineTask{l: l, name: name, total: total, start: time.Now()}
	t.last = t.start
	return t
}

type lineTask struct {
	l     *lines
	name  string
	total int64
	start time.Time
	mu    sync.Mutex
	done  int64
	last  time.Time
}

func (t *lineTask) Add(n int64) {
	t.mu.Lock()
	t.done += n
	t.maybePrint()
	t.mu.Unlock()
}

func (t *lineTask) SetCurrent(n int64) {
	t.mu.Lock()
	t.done = n
	t.maybePrint()
	t.mu.Unlock()
}

func (t *lineTask) maybePrint() {
	if t.l.interval <= 0 || time.Since(t.last) < t.l.interval {
		return
	}
	t.last = time.Now()
	t.l.printf("%s: %s\n", t.name, t.status())
}

func (t *lineTask) status() string {
	s := Bytes(t.done)
	if t.total >= 0 {
		s += " of " + Bytes(t.total)
	}
	if el := time.Since(t.start).Seconds(); el > 0.05 {
		s += fmt.Sprintf(", %s/s", Bytes(int64(float64(t.done)/el)))
	}
	return s
}

func (t *lineTask) Done(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.l.printf("%s: failed after %s\n", t.name, Bytes(t.done))
		return
	}
	t.l.printf("%s: done, %s\n", t.name, t.status())
}

// Bars returns a Reporter that draws a bar per task with its rate and ETA on
// w, which should be a terminal.
func Bars(w io.Writer) Reporter {
	return &bars{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(150*time.Millisecond))}
}

type bars struct{ p *mpb.Progress }

func (b *bars) Wait() { b.p.Wait() }

func (b *bars) Start(name string, total int64) Task {
	bar := b.p.New(max(total, 0), mpb.BarStyle(),
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
			decor.EwmaSpeed(decor.SizeB1024(0), " % .1f", 30, decor.WCSyncSpace),
			decor.OnComplete(decor.EwmaETA(decor.ET_STYLE_MMSS, 30, decor.WCSyncSpace), " done"),
		),
		mpb.BarRemoveOnComplete(),
	)
	return &barTask{bar: bar, last: time.Now(), total: total}
}

type barTask struct {
	bar   *mpb.Bar
	total int64
	mu    sync.Mutex
	last  time.Time // of the previous increment: the EWMA wants per-increment durations
}

func (t *barTask) Add(n int64) {
	t.mu.Lock()
	now := time.Now()
	d := now.Sub(t.last)
	t.last = now
	t.mu.Unlock()
	t.bar.EwmaIncrInt64(n, d)
}

func (t *barTask) SetCurrent(n int64) { t.bar.SetCurrent(n) }

func (t *barTask) Done(err error) {
	if err != nil {
		t.bar.Abort(false)
		return
	}
	if t.total < 0 {
		t.bar.SetTotal(-1, true)
	} else {
		t.bar.SetTotal(t.total, true)
		t.bar.SetCurrent(t.total)
	}
}

// Bytes formats n bytes for people: 512 B, 3.0 MiB, 1.2 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
