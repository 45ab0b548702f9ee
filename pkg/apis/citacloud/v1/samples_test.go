package v1_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/generated/clientset/versioned/fake"
)

const samplesDir = "../../../../manifests/samples"

// sampleObject is a README sample decoded into its Go type.
type sampleObject interface {
	runtime.Object
	metav1.Object
}

func newObjectOfKind(t *testing.T, kind string) sampleObject {
	t.Helper()
	switch kind {
	case "BlockHeightFallback":
		return &citav1.BlockHeightFallback{}
	case "Backup":
		return &citav1.Backup{}
	case "Snapshot":
		return &citav1.Snapshot{}
	case "Restore":
		return &citav1.Restore{}
	case "Switchover":
		return &citav1.Switchover{}
	case "ChangeOwner":
		return &citav1.ChangeOwner{}
	}
	t.Fatalf("unknown kind %q", kind)
	return nil
}

// loadSample decodes a sample strictly: a field the Go types do not know
// fails the test, so the types cover every field users already write.
func loadSample(t *testing.T, file string) sampleObject {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(samplesDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(data, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.APIVersion != citav1.SchemeGroupVersion.String() {
		t.Fatalf("%s: apiVersion %q, want %q", file, meta.APIVersion, citav1.SchemeGroupVersion)
	}
	obj := newObjectOfKind(t, meta.Kind)
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		t.Fatalf("%s does not decode strictly into %T: %v", file, obj, err)
	}
	return obj
}

func sampleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(samplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The original README's 7 samples, and this project's CitaNode sample
	// (checked by TestCitaNodeSample).
	var originals []string
	for _, f := range files {
		if f = filepath.Base(f); f != citaNodeSample {
			originals = append(originals, f)
		}
	}
	if len(originals) != 7 || len(files) != 8 {
		t.Fatalf("want the original README's 7 samples and %s in %s, found %v", citaNodeSample, samplesDir, files)
	}
	return originals
}

const citaNodeSample = "8-citanode.yaml"

// TestCitaNodeSample: the CitaNode sample decodes strictly into the type
// and the CRD admits it.
func TestCitaNodeSample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(samplesDir, citaNodeSample))
	if err != nil {
		t.Fatal(err)
	}
	var cn citav1.CitaNode
	if err := yaml.UnmarshalStrict(data, &cn); err != nil {
		t.Fatalf("%s: %v", citaNodeSample, err)
	}
	if cn.Spec.ChainName == "" || !strings.HasPrefix(cn.Name, cn.Spec.ChainName+"-") {
		t.Fatalf("the sample's name %q is not <chain>-<domain> of chain %q", cn.Name, cn.Spec.ChainName)
	}
	obj := sampleMap(t, citaNodeSample)
	if errs := loadCRD(t, "CitaNode").admit(obj, nil); len(errs) > 0 {
		t.Fatalf("rejected: %v", errs.ToAggregate())
	}
}

func TestSamplesDecodeStrictly(t *testing.T) {
	for _, file := range sampleFiles(t) {
		t.Run(file, func(t *testing.T) {
			loadSample(t, file)
		})
	}
}

func TestSampleFieldsLandInTypedFields(t *testing.T) {
	bhf := loadSample(t, "1-blockheightfallback.yaml").(*citav1.BlockHeightFallback)
	want := citav1.BlockHeightFallbackSpec{
		NodeTarget: citav1.NodeTarget{
			Chain:        "chain-734116911817822208",
			Node:         "chain-734116911817822208-0",
			DeployMethod: citav1.DeployMethodCloudConfig,
		},
		NodeJobOptions: citav1.NodeJobOptions{PodAffinityFlag: ptr(true)},
		JobOptions: citav1.JobOptions{
			Image:                   "registry.devops.rivtower.com/cita-cloud/cita-node-job:v0.0.2",
			PullPolicy:              "Always",
			TTLSecondsAfterFinished: ptr[int32](30),
		},
		BlockHeight: 2000000,
	}
	if diff := cmp.Diff(want, bhf.Spec); diff != "" {
		t.Errorf("BlockHeightFallback sample spec (-want +got):\n%s", diff)
	}

	restore := loadSample(t, "5-restore-snapshot.yaml").(*citav1.Restore)
	if restore.Spec.Snapshot != "snapshot-sample" || restore.Spec.Backup != "" {
		t.Errorf("restore from snapshot: backup=%q snapshot=%q", restore.Spec.Backup, restore.Spec.Snapshot)
	}
	sw := loadSample(t, "6-switchover.yaml").(*citav1.Switchover)
	if sw.Spec.SourceNode != "test-chain-zenoh-bft-node0" || sw.Spec.DestNode != "test-chain-zenoh-bft-node1" {
		t.Errorf("switchover nodes: %q, %q", sw.Spec.SourceNode, sw.Spec.DestNode)
	}
	co := loadSample(t, "7-changeowner.yaml").(*citav1.ChangeOwner)
	if co.Spec.UID == nil || *co.Spec.UID != 1000 || co.Spec.PodAffinityFlag == nil || *co.Spec.PodAffinityFlag {
		t.Errorf("changeowner uid/podAffinityFlag: %v %v", co.Spec.UID, co.Spec.PodAffinityFlag)
	}
}

func TestUnknownFieldIsRejected(t *testing.T) {
	data := []byte("apiVersion: citacloud.rivtower.com/v1\nkind: Backup\nspec:\n  chain: c\n  nodee: n\n")
	if err := yaml.UnmarshalStrict(data, &citav1.Backup{}); err == nil {
		t.Fatal("a misspelt field decoded without error")
	}
}

func ptr[T any](v T) *T { return &v }

// TestDeepCopyAndFakeClientsetRoundTrip proves the generated deepcopy and
// clientset for every kind: the copy is equal yet independent, and what the
// fake clientset stores comes back unchanged.
func TestDeepCopyAndFakeClientsetRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, file := range sampleFiles(t) {
		t.Run(file, func(t *testing.T) {
			obj := loadSample(t, file)
			fillStatus(obj)

			copied := obj.DeepCopyObject().(sampleObject)
			if diff := cmp.Diff(obj, copied); diff != "" {
				t.Fatalf("DeepCopy differs (-orig +copy):\n%s", diff)
			}
			copied.SetLabels(map[string]string{"changed": "yes"})
			mutateStatus(copied)
			if obj.GetLabels() != nil {
				t.Fatal("changing the copy's labels changed the original")
			}
			if cmp.Equal(obj, copied) {
				t.Fatal("changing the copy's status left it equal to the original: copies share memory")
			}

			client := fake.NewSimpleClientset()
			got := roundTrip(ctx, t, client, obj)
			if diff := cmp.Diff(obj, got); diff != "" {
				t.Errorf("fake clientset round trip (-sent +got):\n%s", diff)
			}
		})
	}
}

func fillStatus(obj sampleObject) {
	st := citav1.OperationStatus{
		Status:     citav1.PhaseActive,
		Step:       citav1.StepRunning,
		Conditions: []metav1.Condition{{Type: citav1.ConditionNodeLocked, Status: metav1.ConditionTrue, Reason: "Holding"}},
		Nodes:      []citav1.NodeRecord{{Name: "n", Replicas: ptr[int32](3), Machine: "m"}},
		Job:        &citav1.JobRecord{Name: "j", Result: `{"op":"backup"}`},
	}
	switch o := obj.(type) {
	case *citav1.BlockHeightFallback:
		o.Status.OperationStatus = st
		o.Status.HeightBefore = ptr[int64](120)
	case *citav1.Backup:
		o.Status.OperationStatus = st
		o.Status.Actual = 42
	case *citav1.Snapshot:
		o.Status.OperationStatus = st
		o.Status.BlockHeight = 30
		o.Status.HeightBefore = ptr[int64](31)
	case *citav1.Restore:
		o.Status.OperationStatus = st
		o.Status.Verified = ptr(true)
	case *citav1.Switchover:
		o.Status = st
	case *citav1.ChangeOwner:
		o.Status = st
	}
}

// mutateStatus changes memory reachable only through pointers and slices,
// which a shallow copy would share with the original.
func mutateStatus(obj sampleObject) {
	var st *citav1.OperationStatus
	switch o := obj.(type) {
	case *citav1.BlockHeightFallback:
		st = &o.Status.OperationStatus
		*o.Status.HeightBefore = -1
	case *citav1.Backup:
		st = &o.Status.OperationStatus
	case *citav1.Snapshot:
		st = &o.Status.OperationStatus
		*o.Status.HeightBefore = -1
	case *citav1.Restore:
		st = &o.Status.OperationStatus
	case *citav1.Switchover:
		st = &o.Status
	case *citav1.ChangeOwner:
		st = &o.Status
	}
	*st.Nodes[0].Replicas = 7
	st.Conditions[0].Reason = "Changed"
	st.Job.Name = "other"
}

func roundTrip(ctx context.Context, t *testing.T, client *fake.Clientset, obj sampleObject) sampleObject {
	t.Helper()
	ns := obj.GetNamespace()
	c := client.CitacloudV1()
	var got sampleObject
	var err error
	switch o := obj.(type) {
	case *citav1.BlockHeightFallback:
		if _, err = c.BlockHeightFallbacks(ns).Create(ctx, o, metav1.CreateOptions{}); err == nil {
			got, err = c.BlockHeightFallbacks(ns).Get(ctx, o.Name, metav1.GetOptions{})
		}
	case *citav1.Backup:
		if _, err = c.Backups(ns).Create(ctx, o, metav1.CreateOptions{}); err == nil {
			got, err = c.Backups(ns).Get(ctx, o.Name, metav1.GetOptions{})
		}
	case *citav1.Snapshot:
		if _, err = c.Snapshots(ns).Create(ctx, o, metav1.CreateOptions{}); err == nil {
			got, err = c.Snapshots(ns).Get(ctx, o.Name, metav1.GetOptions{})
		}
	case *citav1.Restore:
		if _, err = c.Restores(ns).Create(ctx, o, metav1.CreateOptions{}); err == nil {
			got, err = c.Restores(ns).Get(ctx, o.Name, metav1.GetOptions{})
		}
	case *citav1.Switchover:
		if _, err = c.Switchovers(ns).Create(ctx, o, metav1.CreateOptions{}); err == nil {
			got, err = c.Switchovers(ns).Get(ctx, o.Name, metav1.GetOptions{})
		}
	case *citav1.ChangeOwner:
		if _, err = c.ChangeOwners(ns).Create(ctx, o, metav1.CreateOptions{}); err == nil {
			got, err = c.ChangeOwners(ns).Get(ctx, o.Name, metav1.GetOptions{})
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return got
}
