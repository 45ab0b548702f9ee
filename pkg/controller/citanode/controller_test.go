package citanode

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2/ktesting"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller"
	citafake "github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/fake"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

// fixture is the controller over fake clientsets whose caches are
// refreshed from the fakes after every sync, as in the operations' tests.
type fixture struct {
	t        *testing.T
	ctx      context.Context
	kube     *k8sfake.Clientset
	cita     *citafake.Clientset
	kubeInf  informers.SharedInformerFactory
	citaInf  citainformers.SharedInformerFactory
	recorder *record.FakeRecorder
	clock    *testingclock.FakeClock
	c        *Controller
}

func newFixture(t *testing.T, kubeObjs []runtime.Object, nodes ...*citav1.CitaNode) *fixture {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	var citaObjs []runtime.Object
	for _, n := range nodes {
		citaObjs = append(citaObjs, n)
	}
	f := &fixture{t: t, ctx: ctx, kube: k8sfake.NewClientset(kubeObjs...), cita: citafake.NewSimpleClientset(citaObjs...), recorder: record.NewFakeRecorder(100)}
	f.kubeInf = informers.NewSharedInformerFactory(f.kube, 0)
	f.citaInf = citainformers.NewSharedInformerFactory(f.cita, 0)
	f.clock = testingclock.NewFakeClock(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC))
	c, err := New(controller.Deps{Kube: f.kube, Cita: f.cita, Informers: controller.Informers{Kube: f.kubeInf, Cita: f.citaInf},
		Recorder: f.recorder, Clock: f.clock}, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	// Tests reach only loopback: a node's API is a fake named by the
	// api-address annotation.
	dial := c.poller.dial
	c.poller.dial = func(addr string) (*nodeapi.Client, error) {
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("polled %s: tests reach only loopback", addr)
			return nil, fmt.Errorf("not loopback: %s", addr)
		}
		return dial(addr)
	}
	f.c = c
	f.refresh()
	f.kube.ClearActions()
	f.cita.ClearActions()
	return f
}

func (f *fixture) refresh() {
	f.t.Helper()
	replace := func(inf cache.SharedIndexInformer, list runtime.Object) {
		items, err := meta.ExtractList(list)
		if err != nil {
			f.t.Fatal(err)
		}
		objs := make([]any, len(items))
		for i := range items {
			objs[i] = items[i]
		}
		if err := inf.GetIndexer().Replace(objs, ""); err != nil {
			f.t.Fatal(err)
		}
	}
	list := func(tr core.ObjectTracker, gvr schema.GroupVersionResource, gvk schema.GroupVersionKind) runtime.Object {
		l, err := tr.List(gvr, gvk, "")
		if err != nil {
			f.t.Fatal(err)
		}
		return l
	}
	tr := f.kube.Tracker()
	replace(f.kubeInf.Apps().V1().StatefulSets().Informer(), list(tr, appsv1.SchemeGroupVersion.WithResource("statefulsets"), appsv1.SchemeGroupVersion.WithKind("StatefulSet")))
	replace(f.kubeInf.Core().V1().Services().Informer(), list(tr, corev1.SchemeGroupVersion.WithResource("services"), corev1.SchemeGroupVersion.WithKind("Service")))
	replace(f.kubeInf.Core().V1().Pods().Informer(), list(tr, corev1.SchemeGroupVersion.WithResource("pods"), corev1.SchemeGroupVersion.WithKind("Pod")))
	gv := citav1.SchemeGroupVersion
	replace(f.citaInf.Citacloud().V1().CitaNodes().Informer(), list(f.cita.Tracker(), gv.WithResource("citanodes"), gv.WithKind("CitaNode")))
}

func (f *fixture) sync(name string) {
	f.t.Helper()
	if err := f.c.sync(f.ctx, cache.ObjectName{Namespace: ns, Name: name}); err != nil {
		f.t.Fatalf("sync %s: %v", name, err)
	}
	f.refresh()
}

// writes are the mutating actions on the fakes, as "verb resource[/sub]".
func (f *fixture) writes() []string {
	var out []string
	for _, a := range append(f.kube.Actions(), f.cita.Actions()...) {
		switch a.GetVerb() {
		case "get", "list", "watch":
			continue
		}
		r := a.GetResource().Resource
		if s := a.GetSubresource(); s != "" {
			r += "/" + s
		}
		out = append(out, a.GetVerb()+" "+r)
	}
	return out
}

func (f *fixture) clear() { f.kube.ClearActions(); f.cita.ClearActions() }

func (f *fixture) statefulSet(name string) *appsv1.StatefulSet {
	f.t.Helper()
	s, err := f.kube.AppsV1().StatefulSets(ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) node(name string) *citav1.CitaNode {
	f.t.Helper()
	n, err := f.cita.CitacloudV1().CitaNodes(ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// inputs are the node's ConfigMaps as cloud-config writes them
// (cm-config.yaml, cm-account.yaml).
func inputs(node string) []runtime.Object {
	var out []runtime.Object
	for _, cm := range nodetest.CloudConfigConfigMaps("test-chain", node, nodetest.Namespace(ns)) {
		out = append(out, cm)
	}
	return out
}

func newCitaNode(name string) *citav1.CitaNode {
	return &citav1.CitaNode{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-cn-" + name), Generation: 1},
		Spec: citav1.CitaNodeSpec{
			ChainName: "test-chain", Version: "v6.7.4", Consensus: citav1.ConsensusRaft, Controller: citav1.ControllerHSM,
			ImageInfo:    citav1.ImageInfo{PullPolicy: corev1.PullIfNotPresent},
			DesiredState: citav1.DesiredStateRunning, HealthCheck: ptr.To(true),
		},
	}
}

func condition(n *citav1.CitaNode, t string) *metav1.Condition {
	return meta.FindStatusCondition(n.Status.Conditions, t)
}

// TestCreatesTheNode: a valid CitaNode gets its StatefulSet and Service,
// applied, and a status saying it waits for its pod; a second sync with
// nothing changed writes nothing.
func TestCreatesTheNode(t *testing.T) {
	f := newFixture(t, inputs("test-chain-node0"), newCitaNode("test-chain-node0"))
	f.sync("test-chain-node0")
	want := []string{"patch statefulsets", "patch services", "update citanodes/status"}
	if got := f.writes(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("writes %v, want %v", got, want)
	}
	s := f.statefulSet("test-chain-node0")
	if ptr.Deref(s.Spec.Replicas, 1) != 1 || !ownedBy(s, newCitaNode("test-chain-node0")) {
		t.Fatalf("StatefulSet replicas %v, owners %+v", s.Spec.Replicas, s.OwnerReferences)
	}
	if n := f.node("test-chain-node0"); n.Status.Status != citav1.NodePhasePending || condition(n, citav1.NodeConditionReady).Reason != ReasonPodNotReady {
		t.Fatalf("status %+v", n.Status)
	}
	f.clear()
	f.sync("test-chain-node0")
	if got := f.writes(); len(got) != 0 {
		t.Fatalf("a sync with nothing changed wrote %v", got)
	}
}

// TestInvalidInputTouchesNothing: a CitaNode whose config is missing, or
// whose account lacks its key, creates nothing, and says why.
func TestInvalidInputTouchesNothing(t *testing.T) {
	for name, objs := range map[string][]runtime.Object{
		"no config":  inputs("test-chain-node0")[1:],
		"no account": inputs("test-chain-node0")[:1],
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, objs, newCitaNode("test-chain-node0"))
			f.sync("test-chain-node0")
			if got := f.writes(); strings.Join(got, ",") != "update citanodes/status" {
				t.Fatalf("writes %v, want only the status", got)
			}
			n := f.node("test-chain-node0")
			c := condition(n, citav1.NodeConditionReady)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonInvalidInput || n.Status.Status != citav1.NodePhaseError {
				t.Fatalf("status %+v", n.Status)
			}
			if ev := <-f.recorder.Events; !strings.HasPrefix(ev, "Warning InvalidInput") {
				t.Fatalf("event %q", ev)
			}
		})
	}
}

// TestStoppedAndRunning: desiredState sets the replicas.
func TestStoppedAndRunning(t *testing.T) {
	cn := newCitaNode("test-chain-node0")
	cn.Spec.DesiredState = citav1.DesiredStateStopped
	f := newFixture(t, inputs("test-chain-node0"), cn)
	f.sync("test-chain-node0")
	if r := ptr.Deref(f.statefulSet("test-chain-node0").Spec.Replicas, 1); r != 0 {
		t.Fatalf("Stopped: %d replicas", r)
	}
	if n := f.node("test-chain-node0"); n.Status.Status != citav1.NodePhaseStopped {
		t.Fatalf("Stopped: phase %s", n.Status.Status)
	}
	cn = f.node("test-chain-node0")
	cn.Spec.DesiredState = citav1.DesiredStateRunning
	cn.Generation++
	if _, err := f.cita.CitacloudV1().CitaNodes(ns).Update(f.ctx, cn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Only the CitaNode changed: that alone is applied.
	f.refresh()
	f.sync("test-chain-node0")
	if r := ptr.Deref(f.statefulSet("test-chain-node0").Spec.Replicas, 1); r != 1 {
		t.Fatalf("Running: %d replicas", r)
	}
}

func bumpGeneration(t *testing.T, f *fixture, name string) {
	t.Helper()
	s := f.statefulSet(name)
	s.Generation++
	s.ResourceVersion = fmt.Sprint(100 + s.Generation) // the apiserver's would move too
	if err := f.kube.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("statefulsets"), s, ns); err != nil {
		t.Fatal(err)
	}
}

// TestHeldNodeIsNotWritten: while an operation holds the node's
// StatefulSet, the controller writes nothing to it, says which operation
// holds it, and converges once the lock is gone.
func TestHeldNodeIsNotWritten(t *testing.T) {
	f := newFixture(t, inputs("test-chain-node0"), newCitaNode("test-chain-node0"))
	f.sync("test-chain-node0")

	// An operation takes the lock and stops the node.
	s := f.statefulSet("test-chain-node0")
	lock := nodeops.LockPatch(nodeops.StatefulSetWorkload(s), nodeops.LockRequest{Holder: nodeops.Holder{Kind: "BlockHeightFallback", Name: "fb", UID: "uid-fb"}, Stop: true})
	if _, err := f.kube.AppsV1().StatefulSets(ns).Patch(f.ctx, s.Name, lock.Type, lock.Data, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	bumpGeneration(t, f, "test-chain-node0")
	f.refresh()
	f.clear()
	f.sync("test-chain-node0")
	for _, w := range f.writes() {
		if strings.Contains(w, "statefulsets") {
			t.Fatalf("wrote the held StatefulSet: %v", f.writes())
		}
	}
	if r := ptr.Deref(f.statefulSet("test-chain-node0").Spec.Replicas, 1); r != 0 {
		t.Fatalf("the operation's stop undone: %d replicas", r)
	}
	c := condition(f.node("test-chain-node0"), citav1.NodeConditionOperationInProgress)
	if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "BlockHeightFallback/fb") {
		t.Fatalf("OperationInProgress %+v", c)
	}

	// Released with the replicas the operation recorded; the controller
	// then owns the workload again.
	s = f.statefulSet("test-chain-node0")
	release := nodeops.ReleasePatch(nodeops.StatefulSetWorkload(s))
	if _, err := f.kube.AppsV1().StatefulSets(ns).Patch(f.ctx, s.Name, release.Type, release.Data, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	bumpGeneration(t, f, "test-chain-node0")
	f.refresh()
	f.sync("test-chain-node0")
	if c := condition(f.node("test-chain-node0"), citav1.NodeConditionOperationInProgress); c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("after the release: %+v", c)
	}
	if r := ptr.Deref(f.statefulSet("test-chain-node0").Spec.Replicas, 1); r != 1 {
		t.Fatalf("after the release: %d replicas", r)
	}
}

// TestApplyCarriesTheCachedResourceVersion: an apply over an existing
// StatefulSet carries the resourceVersion the cache saw, so an apiserver
// refuses it (409) if an operation took the lock since (the fake
// clientset does not check it; the e2e suite runs the real one).
func TestApplyCarriesTheCachedResourceVersion(t *testing.T) {
	f := newFixture(t, inputs("test-chain-node0"), newCitaNode("test-chain-node0"))
	f.sync("test-chain-node0")
	bumpGeneration(t, f, "test-chain-node0") // someone edited it: the next sync applies
	f.refresh()
	cached := f.statefulSet("test-chain-node0").ResourceVersion
	f.clear()
	f.sync("test-chain-node0")
	var body []byte
	for _, a := range f.kube.Actions() {
		if p, ok := a.(core.PatchAction); ok && a.GetResource().Resource == "statefulsets" {
			body = p.GetPatch()
		}
	}
	var applied struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(body, &applied); err != nil || applied.Metadata.ResourceVersion != cached || cached == "" {
		t.Fatalf("apply's resourceVersion %q, cached %q (%v): %s", applied.Metadata.ResourceVersion, cached, err, body)
	}
}

// TestSwitchoverIsKept: a Switchover's swap of the account volume is not
// reverted by the next apply.
func TestSwitchoverIsKept(t *testing.T) {
	f := newFixture(t, inputs("test-chain-node0"), newCitaNode("test-chain-node0"))
	f.sync("test-chain-node0")
	s := f.statefulSet("test-chain-node0")
	for i, v := range s.Spec.Template.Spec.Volumes {
		if v.Name == nodeops.AccountVolume {
			s.Spec.Template.Spec.Volumes[i].ConfigMap.Name = "test-chain-node1-account"
		}
	}
	s.Generation++
	if err := f.kube.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("statefulsets"), s, ns); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	f.sync("test-chain-node0")
	for _, v := range f.statefulSet("test-chain-node0").Spec.Template.Spec.Volumes {
		if v.Name == nodeops.AccountVolume && v.ConfigMap.Name != "test-chain-node1-account" {
			t.Fatalf("the swap was reverted: %s", v.ConfigMap.Name)
		}
	}
}

// TestVersionChangeRollsTheNode: a new version is applied as new images
// (the StatefulSet controller then rolls the pod); the replicas and the
// rest stay.
func TestVersionChangeRollsTheNode(t *testing.T) {
	f := newFixture(t, inputs("test-chain-node0"), newCitaNode("test-chain-node0"))
	f.sync("test-chain-node0")
	cn := f.node("test-chain-node0")
	cn.Spec.Version = "v6.7.5"
	cn.Generation++
	if _, err := f.cita.CitacloudV1().CitaNodes(ns).Update(f.ctx, cn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	f.sync("test-chain-node0")
	for _, c := range f.statefulSet("test-chain-node0").Spec.Template.Spec.Containers {
		if !strings.HasSuffix(c.Image, ":v6.7.5") {
			t.Errorf("container %s runs %s after the version change", c.Name, c.Image)
		}
	}
}

// TestPeersAppliedOnce: a peer outside the namespace gets its Service and
// EndpointSlice once; later syncs with nothing changed write nothing.
func TestPeersAppliedOnce(t *testing.T) {
	cn := newCitaNode("test-chain-node0")
	cn.Spec.ExternalPeers = []citav1.ExternalPeer{{Name: "test-chain-node1", IP: "10.1.2.3", Port: 40000}, {Name: "test-chain-node2", Host: "node2.example.org", Port: 40000}}
	f := newFixture(t, inputs("test-chain-node0"), cn)
	f.sync("test-chain-node0")
	got := strings.Join(f.writes(), ",")
	for _, want := range []string{"patch endpointslices", "patch services"} {
		if !strings.Contains(got, want) {
			t.Fatalf("writes %s, want %s", got, want)
		}
	}
	if _, err := f.kube.DiscoveryV1().EndpointSlices(ns).Get(f.ctx, "test-chain-node1-1", metav1.GetOptions{}); err != nil {
		t.Fatalf("the IP peer's EndpointSlice: %v", err)
	}
	f.clear()
	f.sync("test-chain-node0")
	if w := f.writes(); len(w) != 0 {
		t.Fatalf("a sync with nothing changed wrote %v", w)
	}
}
