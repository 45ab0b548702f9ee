//go:build linux

package main

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

func nodePod(node, uid string, phase corev1.PodPhase, terminating bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-0", UID: types.UID(uid), Labels: map[string]string{nodeLabel: node}},
		Status:     corev1.PodStatus{Phase: phase},
	}
	if terminating {
		p.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
	}
	return p
}

func jobPod(job, claim string, phase corev1.PodPhase, terminating bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job + "-x", UID: types.UID(job), Labels: map[string]string{"job-name": job}},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
			{Name: "node", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}},
		}},
		Status: corev1.PodStatus{Phase: phase},
	}
	if terminating {
		p.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
	}
	return p
}

// TestNodeClock: the pod events of a run, in order, give each node's
// downtime (its pod told to stop → its next pod Running) and its Job's run
// (pod Running → finished; an instant Job's pod is first seen finished);
// what comes before the run, a clean-up's terminating Job pods and pods of
// no node count for nothing; a node never seen up again is stopped but not
// measured.
func TestNodeClock(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	c := newNodeClock()
	c.watchNodes(map[string]string{"datadir-a-0": "a", "datadir-b-0": "b", "datadir-c-0": "c"})

	type event struct {
		ms      int
		pod     any
		deleted bool
	}
	// Before the run: nothing is noted.
	c.observe(nodePod("a", "a0", corev1.PodRunning, true), false, at(0))
	c.begin()
	for _, ev := range []event{
		// A Job pod of the run before, deleted late: ignored.
		{10, jobPod("a-old", "datadir-a-0", corev1.PodSucceeded, true), false},
		{20, jobPod("a-old", "datadir-a-0", corev1.PodSucceeded, false), true},
		// a: a real Job, 2 s of run in 6 s down.
		{100, nodePod("a", "a1", corev1.PodRunning, true), false},
		{150, cache.DeletedFinalStateUnknown{Key: "bench/a-0", Obj: nodePod("a", "a1", corev1.PodRunning, true)}, true},
		{1000, jobPod("a-job", "datadir-a-0", corev1.PodPending, false), false},
		{2000, jobPod("a-job", "datadir-a-0", corev1.PodRunning, false), false},
		{4000, jobPod("a-job", "datadir-a-0", corev1.PodSucceeded, false), false},
		{4500, jobPod("a-job", "datadir-a-0", corev1.PodSucceeded, true), false},
		{5000, nodePod("a", "a2", corev1.PodPending, false), false},
		{6100, nodePod("a", "a2", corev1.PodRunning, false), false},
		{7000, nodePod("a", "a2", corev1.PodRunning, false), false},
		// b: an instant Job, seen finished at once.
		{200, nodePod("b", "b1", corev1.PodRunning, false), false},
		{300, nodePod("b", "b1", corev1.PodRunning, false), true},
		{800, jobPod("b-job", "datadir-b-0", corev1.PodSucceeded, false), false},
		{1200, nodePod("b", "b2", corev1.PodRunning, false), false},
		// c: stopped, its Job done, never seen up again.
		{400, nodePod("c", "c1", corev1.PodRunning, true), false},
		{900, jobPod("c-job", "datadir-c-0", corev1.PodFailed, false), false},
		// A Job pod of no node's data and a pod of no node.
		{500, jobPod("x-job", "backup-x", corev1.PodRunning, false), false},
		{600, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, false},
	} {
		c.observe(ev.pod, ev.deleted, at(ev.ms))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // c never comes up: do not wait for it
	got := c.end(ctx)
	want := downtime{
		stopped: 3,
		down:    []time.Duration{6 * time.Second, 900 * time.Millisecond},
		job:     []time.Duration{2 * time.Second, 0},
		added:   []time.Duration{4 * time.Second, 900 * time.Millisecond},
	}
	// Nodes come out in no particular order.
	sortAll := func(d downtime) downtime {
		for _, l := range [][]time.Duration{d.down, d.job, d.added} {
			slices.Sort(l)
		}
		return d
	}
	if diff := cmp.Diff(sortAll(want), sortAll(got), cmp.AllowUnexported(downtime{})); diff != "" {
		t.Errorf("downtime (-want +got):\n%s", diff)
	}
	// After the run: nothing is noted either.
	c.observe(nodePod("a", "a2", corev1.PodRunning, true), false, at(9000))
	if !c.marks["a"].down.Equal(at(100)) {
		t.Errorf("a's stop moved after the run: %v", c.marks["a"].down)
	}
}

// TestDowntimePercentiles: the added downtime of each node is its downtime
// minus its Job's run; p50 and p99 are nearest-rank percentiles of the
// nodes pooled over rounds; a node without all four marks is stopped but
// not measured.
func TestDowntimePercentiles(t *testing.T) {
	t0 := time.Unix(1000, 0)
	marks := map[string]nodeMarks{}
	// 100 nodes: node i down 10 s + i ms, its Job running 10 s of it.
	for i := 1; i <= 100; i++ {
		down := t0.Add(time.Duration(i) * time.Second)
		marks[fmt.Sprint(i)] = nodeMarks{
			down:     down,
			jobStart: down.Add(time.Second),
			jobEnd:   down.Add(11 * time.Second),
			up:       down.Add(10*time.Second + time.Duration(i)*time.Millisecond),
		}
	}
	marks["no job end"] = nodeMarks{down: t0, jobStart: t0, up: t0.Add(time.Second)}
	marks["never stopped"] = nodeMarks{jobStart: t0, jobEnd: t0}
	d := downtimes(marks)
	if d.stopped != 101 || len(d.added) != 100 {
		t.Fatalf("stopped %d, measured %d; want 101, 100", d.stopped, len(d.added))
	}
	for _, c := range []struct {
		name string
		got  time.Duration
		want time.Duration
	}{
		{"added p50", percentile(d.added, 0.5), 50 * time.Millisecond},
		{"added p99", percentile(d.added, 0.99), 99 * time.Millisecond},
		{"added max", percentile(d.added, 1), 100 * time.Millisecond},
		{"down p50", percentile(d.down, 0.5), 10*time.Second + 50*time.Millisecond},
		{"job p99", percentile(d.job, 0.99), 10 * time.Second},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// Pooled over two rounds (and a run that measured nothing): the
	// percentiles of all nodes.
	other := downtime{stopped: 2, down: []time.Duration{time.Second}, job: []time.Duration{0}, added: []time.Duration{time.Second}}
	all := mergeDowntimes(&d, nil, &other)
	if all.stopped != 103 || len(all.added) != 101 || percentile(all.added, 1) != time.Second || percentile(all.added, 0.5) != 51*time.Millisecond {
		t.Errorf("pooled: stopped %d, measured %d, max %v, p50 %v; want 103, 101, 1s, 51ms",
			all.stopped, len(all.added), percentile(all.added, 1), percentile(all.added, 0.5))
	}
	set := roundSet{
		floors:    []*phaseResult{{downtime: &d}, {downtime: &other}},
		fallbacks: []*phaseResult{{downtime: &other}},
	}
	fl, op := set.downtime()
	if len(fl.added) != 101 || len(op.added) != 1 {
		t.Errorf("round set: floor %d, operator %d nodes measured; want 101, 1", len(fl.added), len(op.added))
	}
}
