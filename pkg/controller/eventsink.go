package controller

import (
	"context"
	"errors"
	"hash/fnv"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// eventSink writes events with several writers and never makes the event
// broadcaster wait. client-go's sink writes one event at a time from the
// broadcaster's watcher, whose queue holds 1000 events and drops what does
// not fit: with hundreds of operations started at once (the N=500 bench, 32
// workers) events came faster than one writer sent them and 7 of 1500 were
// lost. Here each event is queued for one of a few writers, chosen by the
// event's name, so an event and its later count updates (same name) are
// written in order.
type eventSink struct {
	sink    record.EventSink
	queues  []chan func()
	dropped atomic.Int64
	ctx     context.Context
	// retryWait is the pause before a write that failed in transport is
	// tried again (maxTries in all).
	retryWait time.Duration
}

const (
	eventWriters    = 8
	eventQueueDepth = 2000 // per writer
	eventMaxTries   = 3
)

func newEventSink(ctx context.Context, sink record.EventSink, writers, depth int) *eventSink {
	s := &eventSink{sink: sink, ctx: ctx, retryWait: time.Second}
	for range writers {
		q := make(chan func(), depth)
		s.queues = append(s.queues, q)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case write := <-q:
					write()
				}
			}
		}()
	}
	return s
}

func (s *eventSink) enqueue(name string, write func() error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	q := s.queues[h.Sum32()%uint32(len(s.queues))]
	select {
	case q <- func() { s.retry(name, write) }:
	default:
		// Only when the apiserver has been unreachable for a long while:
		// the queues bound the memory events take.
		if n := s.dropped.Add(1); n == 1 || n%1000 == 0 {
			klog.FromContext(s.ctx).Error(nil, "Event queue full, events dropped", "dropped", n)
		}
	}
}

// retry writes until the apiserver answers: an answer, even a refusal, is
// final (as for client-go's sink); transport errors are tried again.
func (s *eventSink) retry(name string, write func() error) {
	for try := 1; ; try++ {
		err := write()
		if err == nil || apierrors.IsAlreadyExists(err) {
			return
		}
		var answered *apierrors.StatusError
		if errors.As(err, &answered) || try >= eventMaxTries {
			klog.FromContext(s.ctx).V(2).Info("Event not written", "event", name, "err", err)
			return
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(s.retryWait):
		}
	}
}

// Create queues the event and returns it as if written: the broadcaster's
// correlator keeps it to count repeats, which then come as Patch calls for
// the same name.
func (s *eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	e = e.DeepCopy()
	s.enqueue(e.Name, func() error {
		_, err := s.sink.Create(e)
		return err
	})
	return e, nil
}

func (s *eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	e = e.DeepCopy()
	s.enqueue(e.Name, func() error {
		_, err := s.sink.Update(e)
		return err
	})
	return e, nil
}

// Patch updates a repeated event's count; if the event is gone (expired),
// it is created again, as client-go's sink does.
func (s *eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	e = e.DeepCopy()
	s.enqueue(e.Name, func() error {
		_, err := s.sink.Patch(e, data)
		if apierrors.IsNotFound(err) {
			fresh := e.DeepCopy()
			fresh.ResourceVersion = ""
			_, err = s.sink.Create(fresh)
		}
		return err
	})
	return e, nil
}
