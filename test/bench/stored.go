//go:build linux

package main

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// storedResult is the operator's memory with many finished CRs in its
// caches, after a restart (a fresh heap) and its first GC since it synced.
type storedResult struct {
	crs        int
	ready      time.Duration
	rss, hwm   int64
	anon, file int64
	heapInuse  float64
	heapAlloc  float64
	goSys      float64
	gcSeen     bool
	waitedGC   time.Duration
	startup    phaseStats
	objectsIn  string
	crsOfKinds map[string]int
}

// measureStored tops the stored CRs up to c.stored with finished
// BlockHeightFallbacks (the status of a real finished one, so each is as
// large as the real thing) while the operator is stopped, restarts it and
// reads its memory once it is idle and has run a GC.
func (e *env) measureStored(ctx context.Context, c *config) (*storedResult, error) {
	res := &storedResult{crsOfKinds: map[string]int{}}
	for kind, idx := range e.crs.indexers {
		res.crsOfKinds[kind] = len(idx.List())
		res.crs += len(idx.List())
	}
	var template *citav1.BlockHeightFallback
	for _, obj := range e.crs.indexers["BlockHeightFallback"].List() {
		if fb := obj.(*citav1.BlockHeightFallback); fb.Status.Status == citav1.PhaseComplete {
			template = fb
			break
		}
	}
	if template == nil {
		return nil, fmt.Errorf("no Complete BlockHeightFallback to copy a status from")
	}
	if err := e.op.stop(); err != nil {
		return nil, err
	}
	extra := c.stored - res.crs
	if extra > 0 {
		idx := make([]int, extra)
		for i := range idx {
			idx[i] = i
		}
		bhf := e.cita.CitacloudV1().BlockHeightFallbacks(benchNS)
		start := time.Now()
		err := forEach(ctx, idx, c.parallel, func(ctx context.Context, i int) error {
			name := fmt.Sprintf("stored-%04d", i)
			node := e.nodes[i%len(e.nodes)]
			cr, err := bhf.Create(ctx, newFallback(name, node, fallbackHeight, nil), metav1.CreateOptions{})
			if err != nil {
				return err
			}
			cr.Status = *template.Status.DeepCopy()
			if cr.Status.Job != nil {
				cr.Status.Job.Name = nodeops.JobName(name, "fallback")
			}
			for j := range cr.Status.Nodes {
				cr.Status.Nodes[j].Name = node
				cr.Status.Nodes[j].Workload = "StatefulSet/" + node
			}
			if _, err = bhf.UpdateStatus(ctx, cr, metav1.UpdateOptions{}); err != nil {
				return err
			}
			// A finished operation holds no finalizer (the chart's admission
			// policy added the operator's at creation).
			_, err = bhf.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
			return err
		})
		if err != nil {
			return nil, err
		}
		res.crsOfKinds["BlockHeightFallback"] += extra
		res.crs += extra
		logf("  %d finished BlockHeightFallbacks added in %s (operator stopped)", extra, time.Since(start).Round(time.Millisecond))
	}
	start := time.Now()
	if err := e.op.start(ctx); err != nil {
		return nil, err
	}
	res.ready = time.Since(start)
	if err := e.waitQuiet(ctx); err != nil {
		return nil, err
	}
	res.startup = e.op.phase("restart with stored CRs")
	synced := float64(time.Now().UnixNano()) / 1e9
	gcStart := time.Now()
	_ = wait.PollUntilContextTimeout(ctx, time.Second, c.gcWait, true, func(context.Context) (bool, error) {
		m, err := e.op.metrics()
		if err != nil {
			return false, nil
		}
		res.gcSeen = m["go_memstats_last_gc_time_seconds"] > synced
		return res.gcSeen, nil
	})
	res.waitedGC = time.Since(gcStart)
	time.Sleep(2 * time.Second) // the scavenger returns freed pages in the background
	pid := e.op.proc.Pid()
	st, err := procStatus(pid)
	if err != nil {
		return nil, err
	}
	res.rss, res.hwm, res.anon, res.file = st["VmRSS"], st["VmHWM"], st["RssAnon"], st["RssFile"]
	m, err := e.op.metrics()
	if err != nil {
		return nil, err
	}
	res.heapInuse = m["go_memstats_heap_inuse_bytes"]
	res.heapAlloc = m["go_memstats_heap_alloc_bytes"]
	res.goSys = m["go_memstats_sys_bytes"]
	res.objectsIn = e.clusterObjects()
	logf("  RSS %s with %d CRs stored (GC seen: %v after %s)", mib(res.rss), res.crs, res.gcSeen, res.waitedGC.Round(time.Second))
	return res, nil
}

// clusterObjects: what the operator's informers cache besides the CRs.
func (e *env) clusterObjects() string {
	pods, _ := e.listers.Pods.List(everything)
	sts, _ := e.listers.StatefulSets.List(everything)
	pvcs, _ := e.listers.PVCs.List(everything)
	return fmt.Sprintf("%d StatefulSets, %d pods, %d PVCs, %d Jobs", len(sts), len(pods), len(pvcs), len(e.jobs.List()))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
