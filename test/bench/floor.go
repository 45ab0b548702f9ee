//go:build linux

package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller/operations"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

// floorJobSuffix names the floor's Jobs apart from the operator's.
const floorJobSuffix = "floor"

// runFloor does, for every node at once, what a StopAndStart
// BlockHeightFallback does, with nothing but the writes it cannot do
// without: scale to 0 (1 patch), wait on a watch until the pod is gone,
// create the same Job the operator builds (1 create), wait on a watch until
// it completes, scale back up (1 patch), wait until the pod is Ready again.
// Per node: start → Ready again.
func (e *env) runFloor(ctx context.Context, nodes []string, rd round) (*phaseResult, error) {
	res := &phaseResult{name: rd.name("floor"), latencies: make([]time.Duration, len(nodes))}
	defaults := operations.DefaultConfig()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	api0, cpu0 := e.apiLoadNow(ctx), e.cpuNow()
	start := time.Now()
	for i, name := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			errs[i] = e.floorOne(ctx, name, rd.jobImage(), int64(defaults.JobActiveDeadline/time.Second))
			res.latencies[i] = time.Since(t)
		}()
	}
	wg.Wait()
	res.wall = time.Since(start)
	res.cpu = e.cpuNow().since(cpu0)
	res.api = e.apiLoadNow(ctx).since(api0)
	for i, err := range errs {
		if err != nil {
			res.failed++
			if res.firstErr == "" {
				res.firstErr = fmt.Sprintf("%s: %v", nodes[i], err)
			}
		}
	}
	logf("%s: %d nodes in %s (%d failed)", res.name, len(nodes), res.wall.Round(time.Millisecond), res.failed)
	if res.failed > 0 {
		return res, fmt.Errorf("%d floor runs failed, first: %s", res.failed, res.firstErr)
	}
	return res, nil
}

// stoppedForFallback waits until the stopped node's pod is gone and returns
// the arguments of its fallback Job, as the operator builds them.
func (e *env) stoppedForFallback(ctx context.Context, node *nodeops.Node) (jobargs.Args, error) {
	if err := e.notify.waitFor(ctx, "pod/"+node.Name, 5*time.Minute, func() bool {
		pods, err := node.Pods(e.listers.Pods)
		return err == nil && len(pods) == 0
	}); err != nil {
		return jobargs.Args{}, fmt.Errorf("pod not gone: %w", err)
	}
	args := jobargs.Args{
		Op:          jobargs.OpFallback,
		NodeRoot:    jobargs.NodeRootMountPath,
		ConfigPath:  node.ConfigPath(),
		BlockHeight: fallbackHeight,
		Crypto:      node.Crypto,
		Consensus:   node.Consensus,
	}
	return args, args.Validate()
}

// waitJob waits until the Job has finished and, if it succeeded, until
// done (if set) accepts it; it fails if the Job failed.
func (e *env) waitJob(ctx context.Context, name string, done func() error) error {
	var ok bool
	if err := e.notify.waitFor(ctx, "job/"+name, 5*time.Minute, func() bool {
		obj, exists, err := e.jobs.GetByKey(benchNS + "/" + name)
		if err != nil || !exists {
			return false
		}
		var finished bool
		if finished, ok = jobDone(obj.(*batchv1.Job)); !finished || !ok || done == nil {
			return finished
		}
		return done() == nil
	}); err != nil {
		return fmt.Errorf("job: %w", err)
	}
	if !ok {
		return fmt.Errorf("job %s failed", name)
	}
	return nil
}

func (e *env) floorOne(ctx context.Context, name, image string, deadline int64) error {
	node, err := nodeops.Locate(e.listers, nodeops.Target{Namespace: benchNS, Chain: benchChain, Name: name, Method: citav1.DeployMethodCloudConfig})
	if err != nil {
		return err
	}
	sts := e.kube.AppsV1().StatefulSets(benchNS)
	if _, err := sts.Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		return err
	}
	args, err := e.stoppedForFallback(ctx, node)
	if err != nil {
		return err
	}
	owner := node.Workload.Object
	// Owned by the StatefulSet, not as its controller: the same Job as the
	// operator's but for the owner the operator would be.
	job := nodeops.Job(nodeops.JobRequest{
		Name:      nodeops.JobName(name, floorJobSuffix),
		Namespace: benchNS,
		Owner: metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: owner.GetName(), UID: owner.GetUID(),
			BlockOwnerDeletion: ptr.To(false)},
		Image:                 image,
		Args:                  args,
		Node:                  node,
		ActiveDeadlineSeconds: deadline,
	})
	if _, err := e.kube.BatchV1().Jobs(benchNS).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := e.waitJob(ctx, job.Name, nil); err != nil {
		return err
	}
	if _, err = sts.Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{}); err != nil {
		return err
	}
	return e.waitNodeReady(ctx, node)
}

// waitNodeReady waits until the started node's pod is Ready, as an
// operation does before it ends (both sides do the same work).
func (e *env) waitNodeReady(ctx context.Context, node *nodeops.Node) error {
	if err := e.notify.waitFor(ctx, "pod/"+node.Name, 5*time.Minute, func() bool {
		pods, err := node.Pods(e.listers.Pods)
		if err != nil || len(pods) == 0 {
			return false
		}
		for _, p := range pods {
			if p.DeletionTimestamp != nil || !podReady(p) {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("pod not Ready after the start: %w", err)
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// cleanJobs deletes the Jobs (and their pods) a timed run left, once it is
// over, so the next run starts with the cluster as this one found it, and
// waits until every node runs again. The floor's Jobs and those of the
// BlockHeightFallbacks compared with it are removed alike, outside both
// timed windows (see -job-ttl).
func (e *env) cleanJobs(ctx context.Context, run string) error {
	start := time.Now()
	err := e.kube.BatchV1().Jobs(benchNS).DeleteCollection(ctx,
		metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}, metav1.ListOptions{})
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
		return len(e.jobs.List()) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("%s Jobs not gone: %w", run, err)
	}
	if err := e.waitNodesRunning(ctx, e.nodes); err != nil {
		return fmt.Errorf("nodes not running again after the %s: %w", run, err)
	}
	logf("%s Jobs deleted, nodes running again, in %s", run, time.Since(start).Round(time.Millisecond))
	return nil
}
