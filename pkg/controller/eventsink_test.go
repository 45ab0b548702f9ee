package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
)

// fakeSink stands for the apiserver: each write takes delay, or waits for
// gate to be closed if set; fail, if set, answers a write instead of it
// being recorded.
type fakeSink struct {
	mu      sync.Mutex
	delay   time.Duration
	gate    chan struct{}
	entered atomic.Int64 // writes begun
	calls   []string     // "create name", "patch name", "update name"
	fail    func(call string) error
}

func (f *fakeSink) write(call string) error {
	f.entered.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(call); err != nil {
			return err
		}
	}
	f.calls = append(f.calls, call)
	return nil
}

func (f *fakeSink) Create(e *corev1.Event) (*corev1.Event, error) {
	return e, f.write("create " + e.Name)
}
func (f *fakeSink) Update(e *corev1.Event) (*corev1.Event, error) {
	return e, f.write("update " + e.Name)
}
func (f *fakeSink) Patch(e *corev1.Event, _ []byte) (*corev1.Event, error) {
	return e, f.write("patch " + e.Name)
}

func (f *fakeSink) written() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// burst emits n events, one per object, through a real broadcaster writing
// to sink while the apiserver (fake) answers nothing, in batches of batch
// events, each emitted once received() counts the ones before it (so the
// broadcaster's own queues, 1000 events each, never overflow because the
// test emits faster than the broadcaster hands events on: only a sink that
// makes it wait can lose events). Then the apiserver answers; burst returns
// how many events reached it.
func burst(t *testing.T, n, batch int, fake *fakeSink, sink record.EventSink, received func() int) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := record.NewBroadcaster(record.WithContext(ctx))
	defer b.Shutdown()
	b.StartRecordingToSink(sink)
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "test"})
	for i := range n {
		if i > 0 && i%batch == 0 && received != nil {
			if err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
				return received() >= i, nil
			}); err != nil {
				t.Fatalf("the sink received %d of the first %d events", received(), i)
			}
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("p%d", i), UID: "u"}}
		rec.Eventf(pod, corev1.EventTypeNormal, "Stopping", "stopping %d", i)
	}
	close(fake.gate)
	last, stable := -1, 0
	_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		got := len(fake.written())
		if got == n {
			return true, nil
		}
		if got == last {
			stable++
		} else {
			stable = 0
		}
		last = got
		return stable >= 20, nil // a second without progress: the rest is lost
	})
	return len(fake.written())
}

// TestEventSinkKeepsEveryEventOfABurst: 2500 events emitted while the
// apiserver answers nothing all arrive once it answers; client-go's sink,
// one write at a time from the broadcaster's watcher, blocks it on the
// first event and loses what the broadcaster's queues cannot hold (the
// control).
func TestEventSinkKeepsEveryEventOfABurst(t *testing.T) {
	const n = 2500
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fake := &fakeSink{gate: make(chan struct{})}
	s := newEventSink(ctx, fake, eventWriters, eventQueueDepth)
	received := func() int {
		queued := 0
		for _, q := range s.queues {
			queued += len(q)
		}
		return queued + int(fake.entered.Load())
	}
	if got := burst(t, n, 500, fake, s, received); got != n {
		t.Errorf("%d of %d events written", got, n)
	}
	serial := &fakeSink{gate: make(chan struct{})}
	if got := burst(t, n, n, serial, serial, nil); got >= n {
		t.Errorf("control: the one-writer sink kept all %d events; the burst does not test anything", n)
	}
}

// TestEventSinkOrderPerName: an event and its count update (same name) are
// written in order, whatever else is queued.
func TestEventSinkOrderPerName(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fake := &fakeSink{delay: time.Millisecond}
	s := newEventSink(ctx, fake, 4, 100)
	for i := range 20 {
		e := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("e%d", i)}}
		_, _ = s.Create(e)
		_, _ = s.Patch(e, []byte(`{"count":2}`))
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return len(fake.written()) == 40, nil
	}); err != nil {
		t.Fatalf("%d of 40 writes", len(fake.written()))
	}
	seen := map[string]bool{}
	for _, c := range fake.written() {
		var verb, name string
		_, _ = fmt.Sscan(c, &verb, &name)
		if verb == "patch" && !seen[name] {
			t.Errorf("%s patched before it was created", name)
		}
		seen[name] = true
	}
}

// TestEventSinkRetries: a transport error is tried again; an answer from
// the apiserver, even a refusal, is not; a count update of an expired event
// creates it again.
func TestEventSinkRetries(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failed := map[string]int{}
	fake := &fakeSink{fail: func(call string) error {
		failed[call]++
		switch {
		case call == "create lost" && failed[call] == 1:
			return errors.New("connection refused")
		case call == "create forbidden":
			return apierrors.NewForbidden(schema.GroupResource{Resource: "events"}, "forbidden", errors.New("no"))
		case call == "patch expired":
			return apierrors.NewNotFound(schema.GroupResource{Resource: "events"}, "expired")
		}
		return nil
	}}
	s := newEventSink(ctx, fake, 1, 10)
	s.retryWait = 0
	for _, name := range []string{"lost", "forbidden"} {
		_, _ = s.Create(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name}})
	}
	_, _ = s.Patch(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "expired", ResourceVersion: "7"}}, []byte(`{}`))
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return len(fake.written()) == 2, nil
	}); err != nil {
		t.Fatalf("writes %v", fake.written())
	}
	if diff := cmp.Diff([]string{"create lost", "create expired"}, fake.written()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if diff := cmp.Diff(map[string]int{"create lost": 2, "create forbidden": 1, "patch expired": 1, "create expired": 1}, failed); diff != "" {
		t.Errorf("attempts (-want +got):\n%s", diff)
	}
}
