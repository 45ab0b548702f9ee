//go:build linux

package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions"
)

// crWatch notes, from the bench's own informers, when each operation was
// first seen finished (Complete or Failed) and when its finalizer was gone:
// status.startTime and endTime have one-second resolution.
type crWatch struct {
	mu       sync.Mutex
	finished map[string]crEnd
	notify   *notifier
	indexers map[string]cache.Indexer
}

type crEnd struct {
	at       time.Time
	phase    citav1.Phase
	message  string
	released bool // finished and without finalizers
}

func crKey(kind, name string) string { return kind + "/" + name }

// operationOf pulls the common status out of any kind.
func operationOf(obj any) (kind string, m metav1.Object, st *citav1.OperationStatus) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	switch o := obj.(type) {
	case *citav1.BlockHeightFallback:
		return "BlockHeightFallback", o, &o.Status.OperationStatus
	case *citav1.Backup:
		return "Backup", o, &o.Status.OperationStatus
	case *citav1.Snapshot:
		return "Snapshot", o, &o.Status.OperationStatus
	case *citav1.Restore:
		return "Restore", o, &o.Status.OperationStatus
	case *citav1.Switchover:
		return "Switchover", o, &o.Status
	case *citav1.ChangeOwner:
		return "ChangeOwner", o, &o.Status
	}
	return "", nil, nil
}

func finished(st *citav1.OperationStatus) bool {
	return st.Status == citav1.PhaseComplete || st.Status == citav1.PhaseFailed
}

func newCRWatch(f citainformers.SharedInformerFactory) (*crWatch, error) {
	w := &crWatch{finished: map[string]crEnd{}, notify: newNotifier(), indexers: map[string]cache.Indexer{}}
	v1 := f.Citacloud().V1()
	for kind, inf := range map[string]cache.SharedIndexInformer{
		"BlockHeightFallback": v1.BlockHeightFallbacks().Informer(),
		"Backup":              v1.Backups().Informer(),
		"Snapshot":            v1.Snapshots().Informer(),
		"Restore":             v1.Restores().Informer(),
		"Switchover":          v1.Switchovers().Informer(),
		"ChangeOwner":         v1.ChangeOwners().Informer(),
	} {
		w.indexers[kind] = inf.GetIndexer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    w.observe,
			UpdateFunc: func(_, obj any) { w.observe(obj) },
		}); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (w *crWatch) observe(obj any) {
	kind, m, st := operationOf(obj)
	if kind == "" || !finished(st) {
		return
	}
	now := time.Now()
	key := crKey(kind, m.GetName())
	w.mu.Lock()
	e, seen := w.finished[key]
	if !seen {
		e = crEnd{at: now, phase: st.Status, message: st.Message}
	}
	e.released = len(m.GetFinalizers()) == 0
	w.finished[key] = e
	w.mu.Unlock()
	w.notify.wake(key)
}

func (w *crWatch) end(key string) (crEnd, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.finished[key]
	return e, ok
}

// operationSpec is one CR to apply and how to create it.
type operationSpec struct {
	kind, name string
	create     func(ctx context.Context) error
}

// phaseResult is one timed batch of operations.
type phaseResult struct {
	name      string
	ops       int
	names     []string // of the CRs
	wall      time.Duration
	latencies []time.Duration
	byKind    map[string][]time.Duration
	failed    int
	firstErr  string
	operator  *phaseStats
	// downtime: what the run cost its nodes (floor, contract floor and
	// operator runs).
	downtime *downtime
	// cpu: the machine during the timed window (first request to last
	// finish); api: what the apiserver served in it.
	cpu cpuUse
	api apiLoad
}

// applyAndWait creates every CR at once (bounded parallelism), waits until
// each is finished and then released (finalizer gone) and the operator's
// queues are idle, and closes the operator's phase.
func (e *env) applyAndWait(ctx context.Context, name string, specs []operationSpec, timeout time.Duration) (*phaseResult, error) {
	res := &phaseResult{name: name, ops: len(specs), byKind: map[string][]time.Duration{}}
	created := make([]time.Time, len(specs))
	idx := make([]int, len(specs))
	for i := range idx {
		idx[i] = i
	}
	api0, cpu0 := e.apiLoadNow(ctx), e.cpuNow()
	start := time.Now()
	if err := forEach(ctx, idx, 64, func(ctx context.Context, i int) error {
		if err := specs[i].create(ctx); err != nil {
			return fmt.Errorf("creating %s %s: %w", specs[i].kind, specs[i].name, err)
		}
		created[i] = time.Now()
		return nil
	}); err != nil {
		return res, err
	}
	logf("  %d CRs created in %s", len(specs), time.Since(start).Round(time.Millisecond))
	var last time.Time
	for i, s := range specs {
		key := crKey(s.kind, s.name)
		if err := e.crs.notify.waitFor(ctx, key, timeout-time.Since(start), func() bool {
			_, ok := e.crs.end(key)
			return ok
		}); err != nil {
			return res, fmt.Errorf("%s not finished: %w", key, err)
		}
		end, _ := e.crs.end(key)
		lat := end.at.Sub(created[i])
		res.latencies = append(res.latencies, lat)
		res.names = append(res.names, s.name)
		res.byKind[s.kind] = append(res.byKind[s.kind], lat)
		if end.at.After(last) {
			last = end.at
		}
		if end.phase != citav1.PhaseComplete {
			res.failed++
			if res.firstErr == "" {
				res.firstErr = fmt.Sprintf("%s: %s", key, end.message)
			}
		}
	}
	res.wall = last.Sub(start)
	res.cpu = e.cpuNow().since(cpu0)
	res.api = e.apiLoadNow(ctx).since(api0)
	logf("  all %d finished in %s (%d failed%s)", len(specs), res.wall.Round(time.Millisecond), res.failed, firstErr(res.firstErr))
	// The writes after the outcome (Job TTL, finalizer removal) belong to
	// the operation too: wait for them before counting.
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
		for _, s := range specs {
			if end, _ := e.crs.end(crKey(s.kind, s.name)); !end.released {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return res, fmt.Errorf("finalizers not removed: %w", err)
	}
	if err := e.waitQuiet(ctx); err != nil {
		return res, err
	}
	st := e.op.phase(name)
	res.operator = &st
	return res, nil
}

func firstErr(s string) string {
	if s == "" {
		return ""
	}
	return "; first: " + s
}

// waitQuiet waits until the operator's queues are idle and it has sent no
// request for a second.
func (e *env) waitQuiet(ctx context.Context) error {
	prev, _, _ := e.op.requests().total()
	stable := 0
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, false, func(context.Context) (bool, error) {
		now, _, _ := e.op.requests().total()
		if now == prev && e.op.queuesIdle() {
			stable++
		} else {
			stable = 0
		}
		prev = now
		return stable >= 2, nil
	})
}

// newFallback is a StopAndStart BlockHeightFallback; ttl nil: the
// default (30 s, the README samples' value).
func newFallback(name, node string, height int64, ttl *int32) *citav1.BlockHeightFallback {
	return &citav1.BlockHeightFallback{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNS},
		Spec: citav1.BlockHeightFallbackSpec{
			NodeTarget:  citav1.NodeTarget{Chain: benchChain, Node: node, DeployMethod: citav1.DeployMethodCloudConfig},
			BlockHeight: height,
			JobOptions:  citav1.JobOptions{TTLSecondsAfterFinished: ttl},
		},
	}
}

// comparedFallback is a BlockHeightFallback of the runs compared with the
// floor: the -job-ttl, and the round's image.
func (e *env) comparedFallback(name, node string, rd round) *citav1.BlockHeightFallback {
	fb := newFallback(name, node, fallbackHeight, ptr.To(e.cfg.jobTTL))
	fb.Spec.Image = rd.crImage()
	return fb
}

// runFallbacks: one StopAndStart BlockHeightFallback per node, all at once.
// Round 1's are named fb-<node>, round r's fb<r>-<node> (instant rounds:
// fbi-, fbi<r>-).
func (e *env) runFallbacks(ctx context.Context, nodes []string, rd round) (*phaseResult, error) {
	c := e.cita.CitacloudV1().BlockHeightFallbacks(benchNS)
	specs := make([]operationSpec, len(nodes))
	for i, n := range nodes {
		name := rd.crPrefix("fb") + n
		specs[i] = operationSpec{kind: "BlockHeightFallback", name: name, create: func(ctx context.Context) error {
			_, err := c.Create(ctx, e.comparedFallback(name, n, rd), metav1.CreateOptions{})
			return err
		}}
	}
	return e.applyAndWait(ctx, rd.name("fallback"), specs, 15*time.Minute)
}

// deleteFallbacks deletes a round's finished BlockHeightFallbacks, so that
// every round starts with the operator's caches as the first did.
func (e *env) deleteFallbacks(ctx context.Context, res *phaseResult) error {
	c := e.cita.CitacloudV1().BlockHeightFallbacks(benchNS)
	return forEach(ctx, res.names, e.cfg.parallel, func(ctx context.Context, name string) error {
		return c.Delete(ctx, name, metav1.DeleteOptions{})
	})
}

// runMixed: a Backup to restore from (alone, first: its latency is that of
// one operation on an idle operator), then units of 7 nodes, each running a
// Backup, a Snapshot, a ChangeOwner, a BlockHeightFallback, a Restore from
// that Backup and a Switchover of a pair, all at once.
func (e *env) runMixed(ctx context.Context, units int) (seed, mixed *phaseResult, err error) {
	v1 := e.cita.CitacloudV1()
	target := func(n string) citav1.NodeTarget {
		return citav1.NodeTarget{Chain: benchChain, Node: n, DeployMethod: citav1.DeployMethodCloudConfig}
	}
	seedName := "mx-seed"
	seed, err = e.applyAndWait(ctx, "seed backup", []operationSpec{{kind: "Backup", name: seedName, create: func(ctx context.Context) error {
		_, err := v1.Backups(benchNS).Create(ctx, &citav1.Backup{ObjectMeta: metav1.ObjectMeta{Name: seedName, Namespace: benchNS},
			Spec: citav1.BackupSpec{NodeTarget: target(e.nodes[0])}}, metav1.CreateOptions{})
		return err
	}}}, 5*time.Minute)
	if err != nil {
		return seed, nil, err
	}
	if seed.failed > 0 {
		return seed, nil, fmt.Errorf("seed backup failed: %s", seed.firstErr)
	}
	var specs []operationSpec
	for u := range units {
		n := e.nodes[1+7*u : 8+7*u]
		sfx := fmt.Sprintf("%02d", u)
		specs = append(specs,
			operationSpec{"Backup", "mx-bk-" + sfx, func(ctx context.Context) error {
				_, err := v1.Backups(benchNS).Create(ctx, &citav1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "mx-bk-" + sfx, Namespace: benchNS},
					Spec: citav1.BackupSpec{NodeTarget: target(n[0])}}, metav1.CreateOptions{})
				return err
			}},
			operationSpec{"Snapshot", "mx-sn-" + sfx, func(ctx context.Context) error {
				_, err := v1.Snapshots(benchNS).Create(ctx, &citav1.Snapshot{ObjectMeta: metav1.ObjectMeta{Name: "mx-sn-" + sfx, Namespace: benchNS},
					Spec: citav1.SnapshotSpec{NodeTarget: target(n[1]), BlockHeight: 30}}, metav1.CreateOptions{})
				return err
			}},
			operationSpec{"ChangeOwner", "mx-co-" + sfx, func(ctx context.Context) error {
				_, err := v1.ChangeOwners(benchNS).Create(ctx, &citav1.ChangeOwner{ObjectMeta: metav1.ObjectMeta{Name: "mx-co-" + sfx, Namespace: benchNS},
					Spec: citav1.ChangeOwnerSpec{NodeTarget: target(n[2]), UID: ptr.To[int64](1234), GID: ptr.To[int64](1234)}}, metav1.CreateOptions{})
				return err
			}},
			operationSpec{"BlockHeightFallback", "mx-fb-" + sfx, func(ctx context.Context) error {
				_, err := v1.BlockHeightFallbacks(benchNS).Create(ctx, newFallback("mx-fb-"+sfx, n[3], 20, nil), metav1.CreateOptions{})
				return err
			}},
			operationSpec{"Restore", "mx-rs-" + sfx, func(ctx context.Context) error {
				_, err := v1.Restores(benchNS).Create(ctx, &citav1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "mx-rs-" + sfx, Namespace: benchNS},
					Spec: citav1.RestoreSpec{NodeTarget: target(n[4]), Backup: seedName}}, metav1.CreateOptions{})
				return err
			}},
			operationSpec{"Switchover", "mx-sw-" + sfx, func(ctx context.Context) error {
				_, err := v1.Switchovers(benchNS).Create(ctx, &citav1.Switchover{ObjectMeta: metav1.ObjectMeta{Name: "mx-sw-" + sfx, Namespace: benchNS},
					Spec: citav1.SwitchoverSpec{Chain: benchChain, SourceNode: n[5], DestNode: n[6]}}, metav1.CreateOptions{})
				return err
			}},
		)
	}
	mixed, err = e.applyAndWait(ctx, "mixed", specs, 10*time.Minute)
	return seed, mixed, err
}

// nonTerminal lists the CRs that are not finished or still hold their
// finalizer, from the apiserver (not a cache).
func (e *env) nonTerminal(ctx context.Context) ([]string, error) {
	var out []string
	add := func(obj any) {
		kind, m, st := operationOf(obj)
		if !finished(st) || len(m.GetFinalizers()) > 0 {
			out = append(out, fmt.Sprintf("%s/%s (%s, finalizers %v)", kind, m.GetName(), st.Status, m.GetFinalizers()))
		}
	}
	v1 := e.cita.CitacloudV1()
	lo := metav1.ListOptions{}
	if l, err := v1.BlockHeightFallbacks(benchNS).List(ctx, lo); err != nil {
		return nil, err
	} else {
		for i := range l.Items {
			add(&l.Items[i])
		}
	}
	if l, err := v1.Backups(benchNS).List(ctx, lo); err != nil {
		return nil, err
	} else {
		for i := range l.Items {
			add(&l.Items[i])
		}
	}
	if l, err := v1.Snapshots(benchNS).List(ctx, lo); err != nil {
		return nil, err
	} else {
		for i := range l.Items {
			add(&l.Items[i])
		}
	}
	if l, err := v1.Restores(benchNS).List(ctx, lo); err != nil {
		return nil, err
	} else {
		for i := range l.Items {
			add(&l.Items[i])
		}
	}
	if l, err := v1.Switchovers(benchNS).List(ctx, lo); err != nil {
		return nil, err
	} else {
		for i := range l.Items {
			add(&l.Items[i])
		}
	}
	if l, err := v1.ChangeOwners(benchNS).List(ctx, lo); err != nil {
		return nil, err
	} else {
		for i := range l.Items {
			add(&l.Items[i])
		}
	}
	sort.Strings(out)
	return out, nil
}

// percentile of sorted durations (nearest rank).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}
