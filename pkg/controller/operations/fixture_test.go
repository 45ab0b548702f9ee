package operations

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
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
	citascheme "github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/scheme"
	citainformers "github.com/cita-cloud/cita-node-operator/pkg/generated/informers/externalversions"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

const ns = "app-rivspace"

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fixture is a controller over fake clientsets whose caches are refreshed
// from the fakes after every sync, so a test drives the machine step by
// step and plays the rest of the cluster (kubelet, Job controller) itself.
type fixture struct {
	t        *testing.T
	ctx      context.Context
	kube     *k8sfake.Clientset
	cita     *citafake.Clientset
	kubeInf  informers.SharedInformerFactory
	citaInf  citainformers.SharedInformerFactory
	clock    *testingclock.FakeClock
	recorder *record.FakeRecorder
	c        *Controller
	rv       *rvCounter
	// kinds is the controller's table: every kind unless a test declares
	// its own.
	kinds []*declaration
	// startedPod, if set, shapes each pod the fixture creates for a started
	// workload (by default Running and Ready); it may return nil to create
	// none.
	startedPod func(*corev1.Pod) *corev1.Pod
	// replicas are the workloads' replicas createPods saw last.
	replicas map[string]int32
}

func newFixture(t *testing.T, objects ...runtime.Object) *fixture {
	t.Helper()
	return newFixtureOf(t, table, objects...)
}

// newFixtureOf is newFixture with a controller of the given kinds only.
func newFixtureOf(t *testing.T, kinds []*declaration, objects ...runtime.Object) *fixture {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	var kubeObjs, citaObjs []runtime.Object
	for _, o := range objects {
		if _, ok := o.(interface{ GetObjectKind() schema.ObjectKind }); !ok {
			continue
		}
		if _, _, err := citascheme.Scheme.ObjectKinds(o); err == nil {
			citaObjs = append(citaObjs, o)
		} else {
			kubeObjs = append(kubeObjs, o)
		}
	}
	f := &fixture{
		t:        t,
		ctx:      ctx,
		kube:     k8sfake.NewSimpleClientset(kubeObjs...),
		cita:     citafake.NewSimpleClientset(citaObjs...),
		clock:    testingclock.NewFakeClock(t0),
		recorder: record.NewFakeRecorder(1000),
		kinds:    kinds,
	}
	f.rv = &rvCounter{n: 100, now: f.clock.Now}
	f.rv.install(&f.kube.Fake, f.kube.Tracker())
	f.rv.install(&f.cita.Fake, f.cita.Tracker())
	f.start()
	f.kube.ClearActions()
	f.cita.ClearActions()
	return f
}

// start builds a controller with empty caches over the fixture's
// clientsets: at creation, and again to play an operator restart.
func (f *fixture) start() {
	t := f.t
	f.kubeInf = informers.NewSharedInformerFactory(f.kube, 0)
	f.citaInf = citainformers.NewSharedInformerFactory(f.cita, 0)
	cfg := DefaultConfig()
	cfg.JobImage = "example.com/cita-node-operator-job:test"
	c, err := newController(controller.Deps{
		Kube: f.kube, Cita: f.cita,
		Informers: controller.Informers{Kube: f.kubeInf, Cita: f.citaInf},
		Recorder:  f.recorder, Clock: f.clock,
	}, cfg, f.kinds)
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	t.Cleanup(func() {
		for _, k := range c.kinds {
			k.queue.ShutDown()
		}
	})
	f.refresh()
}

// refresh replaces every cache with what the fake clientsets hold, after
// playing the StatefulSet and Deployment controllers and the kubelet
// (createPods).
func (f *fixture) refresh() {
	f.t.Helper()
	f.createPods()
	replace := func(inf cache.SharedIndexInformer, list func() ([]runtime.Object, error)) {
		objs, err := list()
		if err != nil {
			f.t.Fatal(err)
		}
		items := make([]any, len(objs))
		for i, o := range objs {
			items[i] = o
		}
		if err := inf.GetIndexer().Replace(items, ""); err != nil {
			f.t.Fatal(err)
		}
	}
	tr := f.kube.Tracker()
	ct := f.cita.Tracker()
	listOf := func(tracker core.ObjectTracker, gvr schema.GroupVersionResource, gvk schema.GroupVersionKind) func() ([]runtime.Object, error) {
		return func() ([]runtime.Object, error) {
			l, err := tracker.List(gvr, gvk, "")
			if err != nil {
				return nil, err
			}
			return meta.ExtractList(l)
		}
	}
	apps := appsv1.SchemeGroupVersion
	replace(f.kubeInf.Apps().V1().StatefulSets().Informer(), listOf(tr, apps.WithResource("statefulsets"), apps.WithKind("StatefulSet")))
	replace(f.kubeInf.Apps().V1().Deployments().Informer(), listOf(tr, apps.WithResource("deployments"), apps.WithKind("Deployment")))
	replace(f.kubeInf.Core().V1().Pods().Informer(), listOf(tr, corev1.SchemeGroupVersion.WithResource("pods"), corev1.SchemeGroupVersion.WithKind("Pod")))
	replace(f.kubeInf.Core().V1().PersistentVolumeClaims().Informer(), listOf(tr, corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims"), corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaim")))
	replace(f.kubeInf.Batch().V1().Jobs().Informer(), listOf(tr, batchv1.SchemeGroupVersion.WithResource("jobs"), batchv1.SchemeGroupVersion.WithKind("Job")))
	gv := citav1.SchemeGroupVersion
	for _, k := range f.c.kinds {
		replace(k.informer, listOf(ct, gv.WithResource(k.resource), gv.WithKind(k.typeName)))
	}
}

// sync runs one sync of the named operation and refreshes the caches.
func (f *fixture) sync(kindName, name string) error {
	f.t.Helper()
	err := f.c.syncOperation(f.ctx, f.c.kindByName[kindName], cache.ObjectName{Namespace: ns, Name: name})
	f.refresh()
	return err
}

func (f *fixture) mustSync(kindName, name string) {
	f.t.Helper()
	if err := f.sync(kindName, name); err != nil {
		f.t.Fatalf("sync %s/%s: %v", kindName, name, err)
	}
}

// --- the rest of the cluster, played by the test ---

func (f *fixture) statefulSet(name string) *appsv1.StatefulSet {
	f.t.Helper()
	s, err := f.kube.AppsV1().StatefulSets(ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) deployment(name string) *appsv1.Deployment {
	f.t.Helper()
	d, err := f.kube.AppsV1().Deployments(ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// createPods plays the workload controllers and the kubelet for workloads
// scaled up since it last looked: a StatefulSet gets its missing ordinals, a
// Deployment as many pods as it lacks, each Running and Ready on machine-a
// unless startedPod says otherwise. Removing the pods of a scaled-down
// workload is the test's (deletePod): a test decides when a node is gone.
func (f *fixture) createPods() {
	f.t.Helper()
	first := f.replicas == nil
	if first {
		f.replicas = map[string]int32{}
	}
	scaledUp := func(key string, r *int32) bool {
		n := ptr.Deref(r, 1)
		before, seen := f.replicas[key]
		f.replicas[key] = n
		return !first && (!seen || n > before)
	}
	tr := f.kube.Tracker()
	podsGVR := corev1.SchemeGroupVersion.WithResource("pods")
	l, err := tr.List(podsGVR, corev1.SchemeGroupVersion.WithKind("Pod"), ns)
	if err != nil {
		f.t.Fatal(err)
	}
	existing := map[string]bool{}
	owned := map[string]int32{}
	for _, p := range l.(*corev1.PodList).Items {
		existing[p.Name] = true
		if key := podWorkloadKey(&p); key != "" && p.DeletionTimestamp == nil {
			owned[key]++
		}
	}
	create := func(name string, labels map[string]string, owner metav1.OwnerReference) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-started-" + name), Labels: labels, ResourceVersion: f.rv.next(),
				OwnerReferences: []metav1.OwnerReference{owner}},
			Spec: corev1.PodSpec{NodeName: "machine-a"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		}
		if f.startedPod != nil {
			if p = f.startedPod(p); p == nil {
				return
			}
		}
		if err := tr.Add(p); err != nil {
			f.t.Fatal(err)
		}
	}
	stsList, err := f.kube.AppsV1().StatefulSets(ns).List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, sts := range stsList.Items {
		if !scaledUp("StatefulSet/"+sts.Name, sts.Spec.Replicas) {
			continue
		}
		for i := range ptr.Deref(sts.Spec.Replicas, 1) {
			if name := fmt.Sprintf("%s-%d", sts.Name, i); !existing[name] {
				create(name, sts.Spec.Template.Labels, metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: sts.Name, UID: sts.UID, Controller: ptr.To(true)})
			}
		}
	}
	dList, err := f.kube.AppsV1().Deployments(ns).List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, d := range dList.Items {
		if !scaledUp("Deployment/"+d.Name, d.Spec.Replicas) {
			continue
		}
		const hash = "7c9d5f"
		labels := map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: hash}
		for k, v := range d.Spec.Template.Labels {
			labels[k] = v
		}
		for i := owned["Deployment/"+d.Name]; i < ptr.Deref(d.Spec.Replicas, 1); i++ {
			rs := d.Name + "-" + hash
			create(fmt.Sprintf("%s-started%d", rs, i), labels, metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, UID: types.UID("uid-rs-" + rs), Controller: ptr.To(true)})
		}
	}
}

// deletePodsOf plays the kubelet removing every pod of a scaled-down
// workload (Kind/name).
func (f *fixture) deletePodsOf(workloadKey string) {
	f.t.Helper()
	l, err := f.kube.Tracker().List(corev1.SchemeGroupVersion.WithResource("pods"), corev1.SchemeGroupVersion.WithKind("Pod"), ns)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, p := range l.(*corev1.PodList).Items {
		if podWorkloadKey(&p) == workloadKey {
			f.deletePod(p.Name)
		}
	}
}

// deletePod plays the kubelet removing a pod of a scaled-down workload.
func (f *fixture) deletePod(name string) {
	f.t.Helper()
	if err := f.kube.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), ns, name); err != nil && !apierrors.IsNotFound(err) {
		f.t.Fatal(err)
	}
	f.refresh()
}

func (f *fixture) job(name string) *batchv1.Job {
	f.t.Helper()
	j, err := f.kube.BatchV1().Jobs(ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

func (f *fixture) jobExists(name string) bool {
	_, err := f.kube.BatchV1().Jobs(ns).Get(f.ctx, name, metav1.GetOptions{})
	return err == nil
}

// finishJob plays the Job controller and the kubelet: the Job's pod ends
// with result as its termination message, and the Job gets its condition.
func (f *fixture) finishJob(name string, succeeded bool, result *jobargs.Result) {
	f.t.Helper()
	job := f.job(name)
	phase := corev1.PodSucceeded
	exit := int32(0)
	if !succeeded {
		phase, exit = corev1.PodFailed, 1
	}
	var msg string
	if result != nil {
		msg = string(result.Encode())
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-pod", Namespace: ns, Labels: job.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: job.Spec.Template.Spec,
		Status: corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{
			Name:  "job",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, Message: msg}},
		}}},
	}
	f.upsert(pod)
	cond := batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}
	if !succeeded {
		cond = batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}
	}
	job.Status.Conditions = append(job.Status.Conditions, cond)
	f.upsert(job)
}

// runningJobPod plays the Job controller creating the Job's pod.
func (f *fixture) runningJobPod(jobName string, waiting *corev1.ContainerStateWaiting) *corev1.Pod {
	f.t.Helper()
	job := f.job(jobName)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: jobName + "-pod", Namespace: ns, Labels: job.Spec.Template.Labels, UID: types.UID(jobName + "-pod-uid"),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec:   job.Spec.Template.Spec,
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if waiting != nil {
		pod.Status.Phase = corev1.PodPending
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "job", State: corev1.ContainerState{Waiting: waiting}}}
	}
	f.upsert(pod)
	return pod
}

func (f *fixture) upsert(obj runtime.Object) {
	f.t.Helper()
	tracker := f.kube.Tracker()
	if isCR(obj) {
		tracker = f.cita.Tracker()
	}
	gvks, _, err := scheme().ObjectKinds(obj)
	if err != nil {
		f.t.Fatal(err)
	}
	gvr, _ := meta.UnsafeGuessKindToResource(gvks[0])
	m, _ := meta.Accessor(obj)
	m.SetResourceVersion(f.rv.next())
	if err := tracker.Update(gvr, obj, m.GetNamespace()); apierrors.IsNotFound(err) {
		err = tracker.Create(gvr, obj, m.GetNamespace())
		if err != nil {
			f.t.Fatal(err)
		}
	} else if err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

func isCR(obj runtime.Object) bool {
	switch obj.(type) {
	case *citav1.BlockHeightFallback, *citav1.Backup, *citav1.Snapshot, *citav1.Restore, *citav1.Switchover, *citav1.ChangeOwner:
		return true
	}
	return false
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = k8sfake.AddToScheme(s)
	_ = citav1.AddToScheme(s)
	return s
}

// deleteCR plays kubectl delete: with finalizers the object only gets a
// deletionTimestamp; without, it is gone.
func (f *fixture) deleteCR(obj object) {
	f.t.Helper()
	cur := f.cr(obj)
	if len(cur.GetFinalizers()) == 0 {
		gvks, _, _ := scheme().ObjectKinds(obj)
		gvr, _ := meta.UnsafeGuessKindToResource(gvks[0])
		if err := f.cita.Tracker().Delete(gvr, ns, obj.GetName()); err != nil {
			f.t.Fatal(err)
		}
		f.refresh()
		return
	}
	cur.SetDeletionTimestamp(ptrTime(f.clock.Now()))
	f.upsert(cur)
}

// cr returns the current stored version of a CR of obj's kind and name.
func (f *fixture) cr(obj object) object {
	f.t.Helper()
	gvks, _, err := scheme().ObjectKinds(obj)
	if err != nil {
		f.t.Fatal(err)
	}
	gvr, _ := meta.UnsafeGuessKindToResource(gvks[0])
	got, err := f.cita.Tracker().Get(gvr, ns, obj.GetName())
	if err != nil {
		f.t.Fatal(err)
	}
	return got.(object)
}

// status of the stored CR, whatever its kind.
func (f *fixture) status(obj object) *citav1.OperationStatus {
	f.t.Helper()
	op := f.op(obj)
	return op.status
}

func (f *fixture) op(obj object) *operation {
	f.t.Helper()
	gvks, _, _ := scheme().ObjectKinds(obj)
	var k *kind
	for _, kk := range f.c.kinds {
		if kk.typeName == gvks[0].Kind {
			k = kk
			break
		}
	}
	op, err := k.get(cache.ObjectName{Namespace: ns, Name: obj.GetName()})
	if err != nil {
		f.t.Fatal(err)
	}
	return op
}

// events drains the recorded events.
func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// writes lists the mutating actions recorded by both fakes as
// "verb resource[/subresource] name", in order.
func (f *fixture) writes() []string {
	var out []string
	for _, a := range append(f.kube.Actions(), f.cita.Actions()...) {
		verb := a.GetVerb()
		if verb == "get" || verb == "list" || verb == "watch" {
			continue
		}
		res := a.GetResource().Resource
		if a.GetSubresource() != "" {
			res += "/" + a.GetSubresource()
		}
		name := ""
		switch x := a.(type) {
		case core.CreateAction:
			if m, err := meta.Accessor(x.GetObject()); err == nil {
				name = m.GetName()
			}
		case core.UpdateAction:
			if m, err := meta.Accessor(x.GetObject()); err == nil {
				name = m.GetName()
			}
		case core.PatchAction:
			name = x.GetName()
		case core.DeleteAction:
			name = x.GetName()
		}
		out = append(out, verb+" "+res+" "+name)
	}
	return out
}

func (f *fixture) clearWrites() {
	f.kube.ClearActions()
	f.cita.ClearActions()
}

// workloadWrites are the writes to StatefulSets and Deployments.
func (f *fixture) workloadWrites() []string {
	var out []string
	for _, w := range f.writes() {
		if strings.Contains(w, "statefulsets") || strings.Contains(w, "deployments") {
			out = append(out, w)
		}
	}
	return out
}

// rvCounter makes the fake clientsets behave like the apiserver on
// resourceVersion: every write bumps it, and an update or patch carrying a
// resourceVersion other than the stored one is refused with a conflict.
type rvCounter struct {
	mu  sync.Mutex
	n   int
	now func() time.Time
}

func (r *rvCounter) next() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	return strconv.Itoa(r.n)
}

func (r *rvCounter) install(fake *core.Fake, tracker core.ObjectTracker) {
	fake.PrependReactor("create", "*", func(a core.Action) (bool, runtime.Object, error) {
		obj := a.(core.CreateAction).GetObject()
		m, err := meta.Accessor(obj)
		if err != nil {
			return false, nil, nil
		}
		m.SetResourceVersion(r.next())
		if m.GetUID() == "" {
			m.SetUID(types.UID("uid-" + m.GetName()))
		}
		if ts := m.GetCreationTimestamp(); ts.IsZero() {
			m.SetCreationTimestamp(metav1.NewTime(r.now()))
		}
		return false, nil, nil // the tracker stores it
	})
	fake.PrependReactor("update", "*", func(a core.Action) (bool, runtime.Object, error) {
		obj := a.(core.UpdateAction).GetObject()
		m, err := meta.Accessor(obj)
		if err != nil {
			return false, nil, nil
		}
		stored, err := tracker.Get(a.GetResource(), a.GetNamespace(), m.GetName())
		if err != nil {
			return true, nil, err
		}
		sm, _ := meta.Accessor(stored)
		if m.GetResourceVersion() != "" && m.GetResourceVersion() != sm.GetResourceVersion() {
			return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), m.GetName(), fmt.Errorf("resourceVersion %s is not %s", m.GetResourceVersion(), sm.GetResourceVersion()))
		}
		if a.GetSubresource() == "status" && isCR(obj) {
			// The status subresource changes only status.
			merged := stored.DeepCopyObject()
			copyStatus(merged, obj)
			obj = merged
			m, _ = meta.Accessor(obj)
		}
		m.SetResourceVersion(r.next())
		if err := tracker.Update(a.GetResource(), obj, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
	fake.PrependReactor("patch", "*", func(a core.Action) (bool, runtime.Object, error) {
		pa := a.(core.PatchAction)
		stored, err := tracker.Get(a.GetResource(), a.GetNamespace(), pa.GetName())
		if err != nil {
			return true, nil, err
		}
		sm, _ := meta.Accessor(stored)
		var probe struct {
			Metadata struct {
				ResourceVersion *string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		_ = json.Unmarshal(pa.GetPatch(), &probe)
		if rv := probe.Metadata.ResourceVersion; rv != nil && *rv != sm.GetResourceVersion() {
			return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), pa.GetName(), fmt.Errorf("resourceVersion %s is not %s", *rv, sm.GetResourceVersion()))
		}
		old, _ := json.Marshal(stored)
		var modified []byte
		switch pa.GetPatchType() {
		case types.MergePatchType:
			modified, err = jsonpatch.MergePatch(old, pa.GetPatch())
		case types.StrategicMergePatchType:
			modified, err = strategicpatch.StrategicMergePatch(old, pa.GetPatch(), stored)
		case types.JSONPatchType:
			// As the apiserver: applied to the stored object, a patch
			// that does not apply is a bare 422.
			var p jsonpatch.Patch
			if p, err = jsonpatch.DecodePatch(pa.GetPatch()); err != nil {
				return true, nil, apierrors.NewBadRequest(err.Error())
			}
			if modified, err = p.Apply(old); err != nil {
				return true, nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
			}
		default:
			return false, nil, nil
		}
		if err != nil {
			return true, nil, err
		}
		// Unmarshal into a zero object: into the old one, removed map keys
		// would survive.
		obj := reflect.New(reflect.TypeOf(stored).Elem()).Interface().(runtime.Object)
		if err := json.Unmarshal(modified, obj); err != nil {
			return true, nil, err
		}
		m, _ := meta.Accessor(obj)
		m.SetResourceVersion(r.next())
		if err := tracker.Update(a.GetResource(), obj, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
}

func copyStatus(dst, src runtime.Object) {
	switch d := dst.(type) {
	case *citav1.BlockHeightFallback:
		d.Status = src.(*citav1.BlockHeightFallback).Status
	case *citav1.Backup:
		d.Status = src.(*citav1.Backup).Status
	case *citav1.Snapshot:
		d.Status = src.(*citav1.Snapshot).Status
	case *citav1.Restore:
		d.Status = src.(*citav1.Restore).Status
	case *citav1.Switchover:
		d.Status = src.(*citav1.Switchover).Status
	case *citav1.ChangeOwner:
		d.Status = src.(*citav1.ChangeOwner).Status
	}
}

// inCluster puts the nodes' objects in the fixture's cluster: in ns, at a
// resourceVersion, as the apiserver would have stored them.
var inCluster = nodetest.Options(nodetest.Namespace(ns), nodetest.ResourceVersion("1"))

func batchJobCondition(condType, reason, message string) batchv1.JobCondition {
	return batchv1.JobCondition{Type: batchv1.JobConditionType(condType), Status: corev1.ConditionTrue, Reason: reason, Message: message}
}

func everything() labels.Selector { return labels.Everything() }

// countWrites counts recorded writes starting with prefix.
func countWrites(f *fixture, prefix string) int {
	n := 0
	for _, w := range f.writes() {
		if strings.HasPrefix(w, prefix) {
			n++
		}
	}
	return n
}

var (
	jobsGVR = batchv1.SchemeGroupVersion.WithResource("jobs")
	jobsGVK = batchv1.SchemeGroupVersion.WithKind("Job")
)

func metaExtract(list runtime.Object) ([]runtime.Object, error) { return meta.ExtractList(list) }

// jobPodFor is the finished pod of a Job, with result as its termination
// message.
func jobPodFor(job *batchv1.Job, result *jobargs.Result) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: job.Name + "-pod", Namespace: job.Namespace, Labels: job.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{
			Name:  "job",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Message: string(result.Encode())}},
		}}},
	}
}
