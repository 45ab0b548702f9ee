//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller/operations"
	citascheme "github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/scheme"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// runContract is the floor plus what DESIGN asks of an operation, without
// the operator: for every node at once, a direct client sends exactly the
// requests the operator sends for a StopAndStart BlockHeightFallback (the
// CR's create, the chart's policy adding its finalizer; the node's
// ConfigMap read; the lock and stop in one StatefulSet patch; status
// Stopping and its event; the Job, owned by the CR; status Running and its
// event; release and start in one patch; status Starting and its event;
// the wait for the pod's Ready; status Complete and its events; the Job's
// TTL once the outcome is recorded; the finalizer's removal), waiting
// on the bench's watches where the operator waits on its informers. No
// operator process, no informers of its own, no queue, no rate limit: the
// best an operator honouring the contract could do, so operator / contract
// says what the operator itself costs and contract / floor what the
// contract does.
func (e *env) runContract(ctx context.Context, nodes []string, rd round) (*phaseResult, error) {
	name := rd.name("contract")
	res := &phaseResult{name: name, ops: len(nodes), latencies: make([]time.Duration, len(nodes)), names: make([]string, len(nodes))}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return res, err
	}
	if err := citascheme.AddToScheme(scheme); err != nil {
		return res, err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: e.kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "cita-node-operator"})

	deadline := int64(operations.DefaultConfig().JobActiveDeadline / time.Second)
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	api0, cpu0 := e.apiLoadNow(ctx), e.cpuNow()
	start := time.Now()
	for i, node := range nodes {
		res.names[i] = rd.crPrefix("ct") + node
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			errs[i] = e.contractOne(ctx, recorder, res.names[i], node, rd, deadline)
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
	logf("%s: %d nodes in %s (%d failed)", name, len(nodes), res.wall.Round(time.Millisecond), res.failed)
	if res.failed > 0 {
		return res, fmt.Errorf("%d contract runs failed, first: %s", res.failed, res.firstErr)
	}
	return res, nil
}

// contractOne is one operation of runContract; its latency ends, like the
// operator's, when the outcome is written (the TTL and the finalizer come
// after it).
func (e *env) contractOne(ctx context.Context, recorder record.EventRecorder, crName, name string, rd round, deadline int64) error {
	crs := e.cita.CitacloudV1().BlockHeightFallbacks(benchNS)
	cr, err := crs.Create(ctx, e.comparedFallback(crName, name, rd), metav1.CreateOptions{})
	if err != nil {
		return err
	}
	target := nodeops.Target{Namespace: benchNS, Chain: benchChain, Name: name, Method: citav1.DeployMethodCloudConfig}
	node, err := nodeops.Locate(e.listers, target)
	if err != nil {
		return err
	}
	if _, err := e.kube.CoreV1().ConfigMaps(benchNS).Get(ctx, node.ConfigMap, metav1.GetOptions{}); err != nil {
		return err
	}
	machine, err := node.Machine(e.listers.Pods)
	if err != nil {
		return err
	}
	holder := nodeops.Holder{Kind: "BlockHeightFallback", Name: cr.Name, UID: cr.UID}
	sts := e.kube.AppsV1().StatefulSets(benchNS)
	lock := nodeops.LockPatch(node.Workload, nodeops.LockRequest{Holder: holder, Stop: true, Machine: machine, Node: &target})
	_, err = sts.Patch(ctx, name, lock.Type, lock.Data, metav1.PatchOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	gen := cr.Generation
	cond := func(t string, s metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: now}
	}
	workload := "StatefulSet/" + name
	cr.Status.OperationStatus = citav1.OperationStatus{
		Status: citav1.PhaseActive, Step: citav1.StepStopping, StartTime: &now, ObservedGeneration: gen,
		Message:    fmt.Sprintf("stopping %s (recorded 1 replicas on %s)", workload, machine),
		Conditions: []metav1.Condition{cond(citav1.ConditionNodeLocked, metav1.ConditionTrue, "Locked", "node(s) locked")},
		Nodes:      []citav1.NodeRecord{{Name: name, Workload: workload, Replicas: ptr.To[int32](1), Machine: machine}},
	}
	if cr, err = crs.UpdateStatus(ctx, cr, metav1.UpdateOptions{}); err != nil {
		return err
	}
	recorder.Eventf(cr, corev1.EventTypeNormal, "Stopping", "scaling %s to 0 (was 1 replicas)", workload)

	args, err := e.stoppedForFallback(ctx, node)
	if err != nil {
		return err
	}
	job := nodeops.Job(nodeops.JobRequest{
		Name:                  nodeops.JobName(cr.Name, "fallback"),
		Namespace:             benchNS,
		Owner:                 *metav1.NewControllerRef(cr, citav1.SchemeGroupVersion.WithKind("BlockHeightFallback")),
		Image:                 rd.jobImage(),
		Args:                  args,
		Node:                  node,
		ActiveDeadlineSeconds: deadline,
	})
	if _, err := e.kube.BatchV1().Jobs(benchNS).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		return err
	}
	cr.Status.Step = citav1.StepRunning
	cr.Status.Message = fmt.Sprintf("node stopped; Job %s running %s on node %s (image %s)", job.Name, args.Op, name, rd.jobImage())
	cr.Status.Conditions = append(cr.Status.Conditions, cond(citav1.ConditionNodeStopped, metav1.ConditionTrue, "Stopped", "node(s) stopped"))
	cr.Status.Job = &citav1.JobRecord{Name: job.Name, Image: rd.jobImage()}
	if cr, err = crs.UpdateStatus(ctx, cr, metav1.UpdateOptions{}); err != nil {
		return err
	}
	recorder.Eventf(cr, corev1.EventTypeNormal, "Running", "Job %s created", job.Name)

	var result string
	if err := e.waitJob(ctx, job.Name, func() (err error) {
		result, err = e.jobResult(job.Name)
		return err
	}); err != nil {
		return err
	}
	// The release is the operator's: guarded by the lock and the replicas
	// the cache shows; a cache behind them costs a retry.
	for {
		cached, err := e.listers.StatefulSets.StatefulSets(benchNS).Get(name)
		if err != nil {
			return err
		}
		if nodeops.HeldBy(nodeops.StatefulSetWorkload(cached), holder) { // the cache has the lock
			_, err = nodeops.PatchWorkload(ctx, e.kube, nodeops.StatefulSetWorkload(cached), benchNS, nodeops.ReleasePatch(nodeops.StatefulSetWorkload(cached)))
			if err == nil {
				break
			}
			if !apierrors.IsConflict(err) {
				return err
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Started, then awaited until Ready: one status write each.
	started := fmt.Sprintf("node started: %s back to 1 replicas", workload)
	cr.Status.Step, cr.Status.Message = citav1.StepStarting, started+"; waiting for it to be Ready"
	cr.Status.Conditions = []metav1.Condition{
		cond(citav1.ConditionNodeLocked, metav1.ConditionFalse, "Released", "node(s) released"),
		cond(citav1.ConditionNodeStopped, metav1.ConditionFalse, "Started", started),
		cond(citav1.ConditionSucceeded, metav1.ConditionTrue, "Succeeded", "Job "+job.Name+" succeeded"),
		cond(citav1.ConditionNodeReady, metav1.ConditionUnknown, operations.ReasonAwaitingReady, "waiting for the pods of "+workload+" to be Ready"),
	}
	cr.Status.Job.Result = result
	if cr, err = crs.UpdateStatus(ctx, cr, metav1.UpdateOptions{}); err != nil {
		return err
	}
	recorder.Eventf(cr, corev1.EventTypeNormal, "Starting", "%s", cr.Status.Message)
	if err := e.waitNodeReady(ctx, node); err != nil {
		return err
	}
	end := metav1.Now()
	msg := fmt.Sprintf("Job %s succeeded; %s; every pod of %s is Ready", job.Name, started, workload)
	cr.Status.Status, cr.Status.Step, cr.Status.EndTime, cr.Status.Message = citav1.PhaseComplete, citav1.StepDone, &end, msg
	cr.Status.Conditions[3] = cond(citav1.ConditionNodeReady, metav1.ConditionTrue, operations.ReasonNodeReady, "every pod of "+workload+" is Ready")
	if cr, err = crs.UpdateStatus(ctx, cr, metav1.UpdateOptions{}); err != nil {
		return err
	}
	recorder.Eventf(cr, corev1.EventTypeNormal, "NodeReady", "every pod of %s is Ready", workload)
	recorder.Eventf(cr, corev1.EventTypeNormal, "Complete", "%s", msg)

	ttl, err := json.Marshal(map[string]any{"spec": map[string]any{"ttlSecondsAfterFinished": e.cfg.jobTTL}})
	if err != nil {
		return err
	}
	if _, err := e.kube.BatchV1().Jobs(benchNS).Patch(ctx, job.Name, types.MergePatchType, ttl, metav1.PatchOptions{}); err != nil {
		return err
	}
	fin, err := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": []string{}, "resourceVersion": cr.ResourceVersion}})
	if err != nil {
		return err
	}
	_, err = crs.Patch(ctx, cr.Name, types.MergePatchType, fin, metav1.PatchOptions{})
	return err
}

// jobResult is the Job pod's termination message, read from the bench's
// pod cache as the operator reads it from its own.
func (e *env) jobResult(job string) (string, error) {
	pods, err := e.listers.Pods.Pods(benchNS).List(everything)
	if err != nil {
		return "", err
	}
	for _, p := range pods {
		if p.Labels["job-name"] != job {
			continue
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.State.Terminated != nil {
				return s.State.Terminated.Message, nil
			}
		}
	}
	return "", fmt.Errorf("no terminated pod of Job %s", job)
}
