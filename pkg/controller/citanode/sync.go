package citanode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// Reasons of a CitaNode's conditions and events.
const (
	ReasonInvalidInput     = "InvalidInput"
	ReasonAdoptionConflict = "AdoptionConflict"
	ReasonHeldByOperation  = "HeldByOperation"
	ReasonReleased         = "Released"
	ReasonPodReady         = "PodReady"
	ReasonPodNotReady      = "PodNotReady"
	ReasonStopped          = "Stopped"
)

// InputRecheck is how soon a CitaNode whose inputs were invalid is checked
// again.
const InputRecheck = 10 * time.Second

// applied remembers, per StatefulSet UID, the generation this controller's
// last apply left and the CitaNode generation it rendered: a later
// StatefulSet generation means someone else changed its spec, which is
// applied over (their changes to the fields this controller owns
// reverted); a later CitaNode generation, a change to render. Lost on
// restart: each StatefulSet is applied once then, which changes nothing
// that is already as rendered.
type applied struct {
	mu          sync.Mutex
	generations map[string][2]int64
	// bodies are the EndpointSlices applied, by namespace/name.
	bodies map[string]string
}

func (a *applied) current(s *appsv1.StatefulSet, cn *citav1.CitaNode) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.generations[string(s.UID)]
	return ok && g == [2]int64{s.Generation, cn.Generation}
}

func (a *applied) record(s *appsv1.StatefulSet, cn *citav1.CitaNode) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.generations[string(s.UID)] = [2]int64{s.Generation, cn.Generation}
}

// sameBody: this process applied exactly body to obj last.
func (a *applied) sameBody(obj metav1.Object, body []byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bodies[obj.GetNamespace()+"/"+obj.GetName()] == string(body)
}

func (a *applied) rememberBody(obj metav1.Object, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bodies[obj.GetNamespace()+"/"+obj.GetName()] = string(body)
}

// sync brings one CitaNode's objects to what it says, unless an operation
// holds its node (the lock contract, nodeops.CheckWritable): then only its
// status is written, with the operation named, and the node converges once
// it is released. Inputs are checked before anything is created or
// changed.
func (c *Controller) sync(ctx context.Context, key cache.ObjectName) error {
	cached, err := c.nodes.CitaNodes(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		// Its StatefulSet and Services go with it (owner references); the
		// data PVC and the ConfigMaps stay.
		c.poller.forget(key)
		c.metrics.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	cn := cached.DeepCopy()
	logger := klog.FromContext(ctx).WithValues("citanode", klog.KObj(cn))
	ctx = klog.NewContext(ctx, logger)
	st := &cn.Status
	st.ObservedGeneration = cn.Generation

	if reason := c.checkInputs(ctx, cn); reason != "" {
		c.setCondition(cn, citav1.NodeConditionReady, metav1.ConditionFalse, ReasonInvalidInput, "%s", reason)
		st.Status, st.Message = citav1.NodePhaseError, reason
		// ConfigMaps are not watched (a namespace may hold many): look
		// again for the inputs the user may apply next.
		c.queue.AddAfter(key, InputRecheck)
		return c.writeStatus(ctx, cached, cn)
	}
	objs, err := Render(cn)
	if err != nil {
		return err
	}

	existing, err := c.sets.StatefulSets(cn.Namespace).Get(cn.Name)
	switch {
	case apierrors.IsNotFound(err):
		existing = nil
	case err != nil:
		return err
	}
	if existing != nil && !ownedBy(existing, cn) {
		if diff := adoptionDiff(existing, objs.StatefulSet); diff != "" {
			msg := fmt.Sprintf("StatefulSet %s exists and differs from this CitaNode: %s; not adopted, nothing changed", existing.Name, diff)
			c.setCondition(cn, citav1.NodeConditionReady, metav1.ConditionFalse, ReasonAdoptionConflict, "%s", msg)
			st.Status, st.Message = citav1.NodePhaseError, msg
			return c.writeStatus(ctx, cached, cn)
		}
	}
	if h, held := holder(existing); held {
		c.setCondition(cn, citav1.NodeConditionOperationInProgress, metav1.ConditionTrue, ReasonHeldByOperation, "%s holds the node: its replicas are the operation's until it releases them", h)
	} else {
		if meta.FindStatusCondition(st.Conditions, citav1.NodeConditionOperationInProgress) != nil {
			c.setCondition(cn, citav1.NodeConditionOperationInProgress, metav1.ConditionFalse, ReasonReleased, "no operation holds the node")
		}
		if existing == nil || !c.applied.current(existing, cn) {
			keepAccount(objs.StatefulSet, existing)
			if existing, err = c.applyStatefulSet(ctx, cn, objs.StatefulSet, existing); err != nil {
				return err
			}
		}
	}
	if err := c.applyServices(ctx, objs); err != nil {
		return err
	}
	c.observe(cn, existing)
	if st.Status == citav1.NodePhaseRunning || st.Status == citav1.NodePhaseStarting {
		c.queue.AddAfter(key, c.pollStatus(ctx, cn))
	}
	return c.writeStatus(ctx, cached, cn)
}

// checkInputs reads the config and account the node mounts and checks
// them; "" when they are fit to run.
func (c *Controller) checkInputs(ctx context.Context, cn *citav1.CitaNode) string {
	config, err := c.deps.Kube.CoreV1().ConfigMaps(cn.Namespace).Get(ctx, ConfigMapName(cn), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		config = nil
	} else if err != nil {
		return fmt.Sprintf("reading ConfigMap %s: %v", ConfigMapName(cn), err)
	}
	var account map[string][]byte
	if a := AccountOf(cn); a.Kind == "ConfigMap" {
		cm, err := c.deps.Kube.CoreV1().ConfigMaps(cn.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			account = map[string][]byte{}
			for k, v := range cm.Data {
				account[k] = []byte(v)
			}
			for k, v := range cm.BinaryData {
				account[k] = v
			}
		case !apierrors.IsNotFound(err):
			return fmt.Sprintf("reading ConfigMap %s: %v", a.Name, err)
		}
	}
	// A Secret account stays nil: CheckInputs leaves its keys to the
	// kubelet, as the operator reads no Secret.
	var invalid *InputError
	if err := CheckInputs(cn, config, account); errors.As(err, &invalid) {
		return invalid.Reason
	} else if err != nil {
		return err.Error()
	}
	return ""
}

// keepAccount gives the rendered StatefulSet the account volume the
// existing one has: spec.account names the node's account when it is
// created; a Switchover moves accounts between nodes afterwards (it
// rewrites the node-account volume), and reverting that would put one
// account on two running nodes.
func keepAccount(want, existing *appsv1.StatefulSet) {
	if existing == nil {
		return
	}
	var live *corev1.Volume
	for i, v := range existing.Spec.Template.Spec.Volumes {
		if v.Name == nodeops.AccountVolume {
			live = &existing.Spec.Template.Spec.Volumes[i]
		}
	}
	if live == nil {
		return
	}
	for i, v := range want.Spec.Template.Spec.Volumes {
		if v.Name == nodeops.AccountVolume {
			want.Spec.Template.Spec.Volumes[i].VolumeSource = *live.VolumeSource.DeepCopy()
		}
	}
}

func ownedBy(o metav1.Object, cn *citav1.CitaNode) bool {
	ref := metav1.GetControllerOf(o)
	return ref != nil && ref.UID == cn.UID
}

func holder(s *appsv1.StatefulSet) (nodeops.Holder, bool) {
	if s == nil {
		return nodeops.Holder{}, false
	}
	return nodeops.Held(s)
}

// applyStatefulSet applies the rendered StatefulSet. Over an existing one
// the apply carries its cached resourceVersion: an operation that took
// the lock since the cache saw it makes the apply a conflict (retried,
// then skipped as held), never a write over a held workload.
func (c *Controller) applyStatefulSet(ctx context.Context, cn *citav1.CitaNode, want, existing *appsv1.StatefulSet) (*appsv1.StatefulSet, error) {
	want = want.DeepCopy()
	want.TypeMeta = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"}
	if existing != nil {
		want.ResourceVersion = existing.ResourceVersion
	}
	body, err := json.Marshal(want)
	if err != nil {
		return nil, err
	}
	got, err := c.deps.Kube.AppsV1().StatefulSets(want.Namespace).Patch(ctx, want.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
	if err != nil {
		return nil, err
	}
	c.applied.record(got, cn)
	klog.FromContext(ctx).V(2).Info("Applied the StatefulSet", "generation", got.Generation)
	return got, nil
}

// applyServices applies the node's Service and its peers' Services when
// the cache shows them otherwise (so an edit of theirs is reverted), and
// the peers' EndpointSlices, which are not cached, when this process has
// not applied the same already.
func (c *Controller) applyServices(ctx context.Context, objs Objects) error {
	for _, svc := range append([]*corev1.Service{objs.Service}, objs.PeerServices...) {
		if svc == nil {
			continue
		}
		if cur, err := c.svcs.Services(svc.Namespace).Get(svc.Name); err == nil && serviceCurrent(cur, svc) {
			continue
		}
		want := svc.DeepCopy()
		want.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
		if _, err := c.apply(ctx, want, func(body []byte, opts metav1.PatchOptions) error {
			_, err := c.deps.Kube.CoreV1().Services(want.Namespace).Patch(ctx, want.Name, types.ApplyPatchType, body, opts)
			return err
		}); err != nil {
			return err
		}
	}
	for _, es := range objs.PeerEndpointSlices {
		want := es.DeepCopy()
		want.TypeMeta = metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"}
		body, err := c.apply(ctx, want, nil)
		if err != nil || c.applied.sameBody(want, body) {
			continue
		}
		if _, err := c.apply(ctx, want, func(body []byte, opts metav1.PatchOptions) error {
			_, err := c.deps.Kube.DiscoveryV1().EndpointSlices(want.Namespace).Patch(ctx, want.Name, types.ApplyPatchType, body, opts)
			return err
		}); err != nil {
			return err
		}
		c.applied.rememberBody(want, body)
	}
	return nil
}

// apply server-side applies obj with patch as this controller's field
// manager, forcing its fields; with a nil patch it only returns the body.
func (c *Controller) apply(_ context.Context, obj metav1.Object, patch func(body []byte, opts metav1.PatchOptions) error) ([]byte, error) {
	body, err := json.Marshal(obj)
	if err != nil || patch == nil {
		return body, err
	}
	return body, patch(body, metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
}

// serviceCurrent: the cached Service already has what the controller
// applies (the apiserver's own additions, such as the cluster IP, aside).
func serviceCurrent(cur, want *corev1.Service) bool {
	if !ownedByRef(cur, want) || cur.Spec.Type != want.Spec.Type || cur.Spec.ExternalName != want.Spec.ExternalName ||
		!apiequality.Semantic.DeepEqual(cur.Spec.Selector, want.Spec.Selector) || len(cur.Spec.Ports) != len(want.Spec.Ports) {
		return false
	}
	for k, v := range want.Annotations {
		if cur.Annotations[k] != v {
			return false
		}
	}
	for i, p := range want.Spec.Ports {
		q := cur.Spec.Ports[i]
		if p.Name != q.Name || p.Port != q.Port || p.Protocol != q.Protocol || p.TargetPort != q.TargetPort {
			return false
		}
	}
	return true
}

func ownedByRef(cur, want metav1.Object) bool {
	a, b := metav1.GetControllerOf(cur), metav1.GetControllerOf(want)
	return a != nil && b != nil && a.UID == b.UID
}

// adoptionDiff says what adopting an existing StatefulSet would change in
// its pods ("" when nothing: then the node keeps running as it is).
func adoptionDiff(existing, want *appsv1.StatefulSet) string {
	var diffs []string
	have := map[string]corev1.Container{}
	for _, c := range existing.Spec.Template.Spec.Containers {
		have[c.Name] = c
	}
	for _, c := range want.Spec.Template.Spec.Containers {
		h, ok := have[c.Name]
		switch {
		case !ok:
			diffs = append(diffs, "container "+c.Name+" missing")
		case h.Image != c.Image:
			diffs = append(diffs, fmt.Sprintf("container %s image %s, the CitaNode's %s", c.Name, h.Image, c.Image))
		}
	}
	if len(existing.Spec.Template.Spec.Containers) != len(want.Spec.Template.Spec.Containers) {
		diffs = append(diffs, fmt.Sprintf("%d containers, the CitaNode's %d", len(existing.Spec.Template.Spec.Containers), len(want.Spec.Template.Spec.Containers)))
	}
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprint(diffs)
}

// observe sets the phase and the Ready condition from the StatefulSet and
// the node's pod.
func (c *Controller) observe(cn *citav1.CitaNode, s *appsv1.StatefulSet) {
	st := &cn.Status
	pod, err := c.pods.Pods(cn.Namespace).Get(cn.Name + "-0")
	if err != nil {
		pod = nil
	}
	st.ReadyReplicas = 0
	st.Images = map[string]string{}
	if pod != nil {
		for _, ct := range pod.Spec.Containers {
			st.Images[ct.Name] = ct.Image
		}
		if podReady(pod) && pod.DeletionTimestamp == nil {
			st.ReadyReplicas = 1
		}
	}
	if len(st.Images) == 0 {
		st.Images = nil
	}
	stopped := cn.Spec.DesiredState == citav1.DesiredStateStopped
	if h, held := holder(s); held {
		st.Message = h.String() + " holds the node"
	} else {
		st.Message = ""
	}
	switch {
	case stopped && pod == nil:
		st.Status = citav1.NodePhaseStopped
		c.setCondition(cn, citav1.NodeConditionReady, metav1.ConditionFalse, ReasonStopped, "desiredState is Stopped")
	case stopped:
		st.Status = citav1.NodePhaseStopping
		c.setCondition(cn, citav1.NodeConditionReady, metav1.ConditionFalse, ReasonStopped, "desiredState is Stopped")
	case pod == nil:
		st.Status = citav1.NodePhasePending
		c.setCondition(cn, citav1.NodeConditionReady, metav1.ConditionFalse, ReasonPodNotReady, "no pod yet")
	case st.ReadyReplicas == 1:
		st.Status = citav1.NodePhaseRunning
		c.setCondition(cn, citav1.NodeConditionReady, metav1.ConditionTrue, ReasonPodReady, "pod %s is Ready", pod.Name)
	default:
		st.Status = citav1.NodePhaseStarting
		c.setCondition(cn, citav1.NodeConditionReady, metav1.ConditionFalse, ReasonPodNotReady, "pod %s is not Ready", pod.Name)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (c *Controller) setCondition(cn *citav1.CitaNode, condType string, status metav1.ConditionStatus, reason, format string, args ...any) {
	meta.SetStatusCondition(&cn.Status.Conditions, metav1.Condition{
		Type: condType, Status: status, Reason: reason, Message: fmt.Sprintf(format, args...),
		ObservedGeneration: cn.Generation, LastTransitionTime: metav1.NewTime(c.deps.Clock.Now()),
	})
}

// writeStatus writes the status if it changed, with an event for a change
// of the Ready condition's reason (Warning when it is not Ready for a
// reason other than the node starting or stopping).
func (c *Controller) writeStatus(ctx context.Context, cached, cn *citav1.CitaNode) error {
	if apiequality.Semantic.DeepEqual(cached.Status, cn.Status) {
		return nil
	}
	before := meta.FindStatusCondition(cached.Status.Conditions, citav1.NodeConditionReady)
	after := meta.FindStatusCondition(cn.Status.Conditions, citav1.NodeConditionReady)
	if _, err := c.deps.Cita.CitacloudV1().CitaNodes(cn.Namespace).UpdateStatus(ctx, cn, metav1.UpdateOptions{}); err != nil {
		return err
	}
	if after != nil && (before == nil || before.Reason != after.Reason) {
		eventType := corev1.EventTypeNormal
		if after.Reason == ReasonInvalidInput || after.Reason == ReasonAdoptionConflict {
			eventType = corev1.EventTypeWarning
		}
		c.deps.Recorder.Event(cn, eventType, after.Reason, after.Message)
	}
	return nil
}
