//go:build linux

package main

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
)

// nodeLabel names the node a node's pod belongs to (test/fixtures).
const nodeLabel = "app.kubernetes.io/chain-node"

// nodeClock notes, from the bench's pod watch during a timed run, when each
// node went down and came back and when its Job's pod ran, on the bench's
// own clock at each event: the pods' own timestamps have one-second
// resolution, too coarse for a Job that takes none.
type nodeClock struct {
	mu     sync.Mutex
	on     bool
	claims map[string]string // a node's data PVC → the node
	marks  map[string]*nodeMarks
}

// nodeMarks is one node's run: down when its pod was told to stop (seen
// with a deletionTimestamp, or gone), up when its next pod was seen
// Running; its Job's pod seen running (or finished, if that is the first
// thing seen of it: an instant Job) and seen finished.
type nodeMarks struct {
	down, up         time.Time
	downPod          types.UID
	jobStart, jobEnd time.Time
}

func newNodeClock() *nodeClock {
	return &nodeClock{claims: map[string]string{}, marks: map[string]*nodeMarks{}}
}

// watchNodes tells the clock which data PVC is whose (a Job's pod mounts
// its node's).
func (c *nodeClock) watchNodes(claims map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.claims = claims
}

// begin starts a run: the marks of the one before are forgotten.
func (c *nodeClock) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on, c.marks = true, map[string]*nodeMarks{}
}

// end closes the run, once every node that went down was seen up again and
// its Job finished (at most 10 s after the caller saw the nodes running:
// the bench's handlers run after its caches are updated), and returns what
// the run cost the nodes.
func (c *nodeClock) end(ctx context.Context) downtime {
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, m := range c.marks {
			if !m.down.IsZero() && (m.up.IsZero() || m.jobEnd.IsZero()) {
				return false, nil
			}
		}
		return true, nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = false
	marks := make(map[string]nodeMarks, len(c.marks))
	for n, m := range c.marks {
		marks[n] = *m
	}
	return downtimes(marks)
}

func (c *nodeClock) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.observe(obj, false, time.Now()) },
		UpdateFunc: func(_, obj any) { c.observe(obj, false, time.Now()) },
		DeleteFunc: func(obj any) { c.observe(obj, true, time.Now()) },
	}
}

// observe notes what one event of a pod, seen at now, says of its node.
func (c *nodeClock) observe(obj any, deleted bool, now time.Time) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return
	}
	if node := pod.Labels[nodeLabel]; node != "" && pod.Labels["job-name"] == "" {
		m := c.mark(node)
		stopping := deleted || pod.DeletionTimestamp != nil
		switch {
		case m.down.IsZero() && stopping:
			m.down, m.downPod = now, pod.UID
		case !m.down.IsZero() && m.up.IsZero() && !stopping && pod.UID != m.downPod && pod.Status.Phase == corev1.PodRunning:
			m.up = now
		}
		return
	}
	// A Job's pod being deleted is the clean-up of an earlier run, or of
	// this one after it finished: nothing to note.
	if pod.Labels["job-name"] == "" || deleted || pod.DeletionTimestamp != nil {
		return
	}
	node := ""
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && c.claims[v.PersistentVolumeClaim.ClaimName] != "" {
			node = c.claims[v.PersistentVolumeClaim.ClaimName]
			break
		}
	}
	if node == "" {
		return
	}
	m := c.mark(node)
	done := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if m.jobStart.IsZero() && (done || pod.Status.Phase == corev1.PodRunning) {
		m.jobStart = now
	}
	if m.jobEnd.IsZero() && done {
		m.jobEnd = now
	}
}

func (c *nodeClock) mark(node string) *nodeMarks {
	m := c.marks[node]
	if m == nil {
		m = &nodeMarks{}
		c.marks[node] = m
	}
	return m
}

// downtime is what one run cost its nodes: per node measured, how long it
// was down (stop → start), how long its Job's pod ran, and the difference,
// what the stop, the Job's creation and completion and the start added.
type downtime struct {
	stopped int // nodes that went down
	down    []time.Duration
	job     []time.Duration
	added   []time.Duration
}

// downtimes measures every node with all four marks; the others count as
// stopped but unmeasured.
func downtimes(marks map[string]nodeMarks) downtime {
	var d downtime
	for _, m := range marks {
		if m.down.IsZero() {
			continue
		}
		d.stopped++
		if m.up.IsZero() || m.jobStart.IsZero() || m.jobEnd.IsZero() {
			continue
		}
		down, job := m.up.Sub(m.down), m.jobEnd.Sub(m.jobStart)
		d.down, d.job, d.added = append(d.down, down), append(d.job, job), append(d.added, down-job)
	}
	return d
}

// mergeDowntimes pools the nodes of several runs (rounds of one kind).
func mergeDowntimes(ds ...*downtime) downtime {
	var out downtime
	for _, d := range ds {
		if d == nil {
			continue
		}
		out.stopped += d.stopped
		out.down = append(out.down, d.down...)
		out.job = append(out.job, d.job...)
		out.added = append(out.added, d.added...)
	}
	return out
}
