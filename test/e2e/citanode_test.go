package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/controller/citanode"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeapi/nodeapitest"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
	"github.com/cita-cloud/cita-node-operator/test/fixtures"
)

// citaNodeInputs creates a node's config and account ConfigMaps, as a user
// applies cloud-config's cm-config.yaml and cm-account.yaml.
func citaNodeInputs(t *testing.T, ns, chain, node string) {
	t.Helper()
	for _, cm := range nodetest.CloudConfigConfigMaps(chain, node, nodetest.Namespace(ns)) {
		if _, err := env.kube.CoreV1().ConfigMaps(ns).Create(env.ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func citaNodeYAML(ns, name, chain, extra string) string {
	return fmt.Sprintf("apiVersion: citacloud.rivtower.com/v1\nkind: CitaNode\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  chainName: %s\n%s", name, ns, chain, extra)
}

func waitCitaNode(t *testing.T, ns, name string, phase citav1.NodePhase) *citav1.CitaNode {
	t.Helper()
	var cn *citav1.CitaNode
	eventually(t, 2*time.Minute, "CitaNode "+name+" "+string(phase), func() (bool, string) {
		var err error
		cn, err = env.cita.CitacloudV1().CitaNodes(ns).Get(env.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return cn.Status.Status == phase && cn.Status.ObservedGeneration == cn.Generation, fmt.Sprintf("%s: %s %+v", cn.Status.Status, cn.Status.Message, cn.Status.Conditions)
	})
	return cn
}

// TestCitaNodeRunsAndOperationsWorkOnIt: a CitaNode applied with its
// ConfigMaps runs (its StatefulSet and Service created, its pod Ready,
// Running in kubectl get cn); a fallback on it (deployMethod cloud-config)
// is Complete, the CitaNode holding off while the operation holds the node
// and Running after; desiredState Stopped set during an operation stops
// the node once the operation started it again; deleting the CitaNode
// deletes its StatefulSet and keeps the data PVC.
func TestCitaNodeRunsAndOperationsWorkOnIt(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-citanode")
	citaNodeInputs(t, ns, "cn-chain", "cn-chain-node0")
	// The node's gRPC API: a fake on loopback, where the operator (outside
	// the cluster's network here) is told to find it.
	addr, api := nodeapitest.Start(t)
	api.SetHeight(4242)
	api.SetPeers(3)
	api.SetSynced(true)
	meta := fmt.Sprintf("  annotations:\n    %s: %q\n", citanode.AnnotationAPIAddress, addr)
	mustApply(t, strings.Replace(citaNodeYAML(ns, "cn-chain-node0", "cn-chain", ""), "  namespace: "+ns+"\n", "  namespace: "+ns+"\n"+meta, 1))
	cn := waitCitaNode(t, ns, "cn-chain-node0", citav1.NodePhaseRunning)
	if c := apimeta.FindStatusCondition(cn.Status.Conditions, citav1.NodeConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Ready %+v", c)
	}
	eventually(t, time.Minute, "the node's height in kubectl get cn", func() (bool, string) {
		out, err := kubectl("get", "cn", "-n", ns)
		return err == nil && strings.Contains(out, "cn-chain-node0") && strings.Contains(out, "Running") && strings.Contains(out, "4242") && strings.Contains(out, "true"), out
	})
	if _, err := env.kube.CoreV1().Services(ns).Get(env.ctx, "cn-chain-node0", metav1.GetOptions{}); err != nil {
		t.Fatalf("the node's Service: %v", err)
	}
	// The chain's state, as a node that has run writes it into its volume.
	root := volumeDir(t, ns, "datadir-cn-chain-node0-0")
	if err := fixtures.SeedNodeRoot(root, "cn-chain-node0", false); err != nil {
		t.Fatal(err)
	}

	// An operation on it, as on any cloud-config node.
	mustApply(t, fmt.Sprintf("apiVersion: citacloud.rivtower.com/v1\nkind: BlockHeightFallback\nmetadata:\n  name: fb\n  namespace: %s\nspec:\n  chain: cn-chain\n  node: cn-chain-node0\n  deployMethod: cloud-config\n  blockHeight: %d\n", ns, slowHeight))
	eventually(t, time.Minute, "the CitaNode seeing the operation", func() (bool, string) {
		cn, err := env.cita.CitacloudV1().CitaNodes(ns).Get(env.ctx, "cn-chain-node0", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		c := apimeta.FindStatusCondition(cn.Status.Conditions, citav1.NodeConditionOperationInProgress)
		return c != nil && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, "BlockHeightFallback/fb"), fmt.Sprintf("%+v", c)
	})
	// Stopped while the fallback holds the node: the operation still starts
	// it; then the CitaNode stops it.
	if _, err := applyYAML(t, citaNodeYAML(ns, "cn-chain-node0", "cn-chain", "  desiredState: Stopped\n")); err != nil {
		t.Fatal(err)
	}
	mustComplete(t, waitOp(t, "BlockHeightFallback", ns, "fb", opTimeout))
	waitCitaNode(t, ns, "cn-chain-node0", citav1.NodePhaseStopped)
	sts, err := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, "cn-chain-node0", metav1.GetOptions{})
	if err != nil || sts.Spec.Replicas == nil || *sts.Spec.Replicas != 0 {
		t.Fatalf("after Stopped: %v %+v", err, sts.Spec.Replicas)
	}
	mustApply(t, citaNodeYAML(ns, "cn-chain-node0", "cn-chain", "  desiredState: Running\n"))
	waitCitaNode(t, ns, "cn-chain-node0", citav1.NodePhaseRunning)

	// Deleted: the StatefulSet goes (the garbage collector), the data stays.
	if out, err := kubectl("delete", "cn", "-n", ns, "cn-chain-node0"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	eventually(t, time.Minute, "the StatefulSet gone", func() (bool, string) {
		_, err := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, "cn-chain-node0", metav1.GetOptions{})
		return notFound(err), fmt.Sprint(err)
	})
	if _, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Get(env.ctx, "datadir-cn-chain-node0-0", metav1.GetOptions{}); err != nil {
		t.Fatalf("the data PVC: %v", err)
	}
	for _, cm := range []string{"cn-chain-node0-config", "cn-chain-node0-account"} {
		if _, err := env.kube.CoreV1().ConfigMaps(ns).Get(env.ctx, cm, metav1.GetOptions{}); err != nil {
			t.Errorf("ConfigMap %s: %v", cm, err)
		}
	}
}

// TestCitaNodeRefusesBadInput: a CitaNode without its config creates
// nothing and says why, until the config is applied.
func TestCitaNodeRefusesBadInput(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-citanode-bad")
	mustApply(t, citaNodeYAML(ns, "bad-chain-node0", "bad-chain", ""))
	cn := waitCitaNode(t, ns, "bad-chain-node0", citav1.NodePhaseError)
	c := apimeta.FindStatusCondition(cn.Status.Conditions, citav1.NodeConditionReady)
	if c == nil || c.Reason != "InvalidInput" || !strings.Contains(c.Message, "bad-chain-node0-config") {
		t.Fatalf("Ready %+v", c)
	}
	if _, err := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, "bad-chain-node0", metav1.GetOptions{}); !notFound(err) {
		t.Fatalf("a StatefulSet was created for invalid input: %v", err)
	}
	if reasons := strings.Join(eventReasons(t, ns, "bad-chain-node0"), ","); !strings.Contains(reasons, "Warning InvalidInput") {
		t.Errorf("events %s", reasons)
	}
	// The inputs applied after: the CitaNode looks again by itself (its
	// controller does not cache ConfigMaps) and runs the node.
	citaNodeInputs(t, ns, "bad-chain", "bad-chain-node0")
	waitCitaNode(t, ns, "bad-chain-node0", citav1.NodePhaseRunning)
}

// TestCitaNodeAdoptsAnExistingNode: a node deployed from cloud-config's
// YAML (its StatefulSet and Service, here rendered from the same spec
// without an owner) is adopted by a CitaNode of its name without a
// restart: the same pod, the same revision, now owned by the CitaNode.
func TestCitaNodeAdoptsAnExistingNode(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-citanode-adopt")
	citaNodeInputs(t, ns, "ad-chain", "ad-chain-node0")
	cn := &citav1.CitaNode{ObjectMeta: metav1.ObjectMeta{Name: "ad-chain-node0", Namespace: ns}, Spec: citav1.CitaNodeSpec{ChainName: "ad-chain"}}
	objs, err := citanode.Render(cn)
	if err != nil {
		t.Fatal(err)
	}
	sts, svc := objs.StatefulSet.DeepCopy(), objs.Service.DeepCopy()
	sts.OwnerReferences, svc.OwnerReferences = nil, nil
	if _, err := env.kube.AppsV1().StatefulSets(ns).Create(env.ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.kube.CoreV1().Services(ns).Create(env.ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var before corev1.Pod
	eventually(t, time.Minute, "the node's pod running", func() (bool, string) {
		p, err := env.kube.CoreV1().Pods(ns).Get(env.ctx, "ad-chain-node0-0", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		before = *p
		return p.Status.Phase == corev1.PodRunning, string(p.Status.Phase)
	})

	mustApply(t, citaNodeYAML(ns, "ad-chain-node0", "ad-chain", ""))
	waitCitaNode(t, ns, "ad-chain-node0", citav1.NodePhaseRunning)
	eventually(t, time.Minute, "the StatefulSet owned by the CitaNode", func() (bool, string) {
		s, err := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, "ad-chain-node0", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ref := metav1.GetControllerOf(s)
		return ref != nil && ref.Kind == "CitaNode", fmt.Sprintf("owners %+v", s.OwnerReferences)
	})
	s, err := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, "ad-chain-node0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Give a rollout the time to show, then check there was none.
	time.Sleep(2 * time.Second)
	after, err := env.kube.CoreV1().Pods(ns).Get(env.ctx, "ad-chain-node0-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != before.UID || after.Labels["controller-revision-hash"] != before.Labels["controller-revision-hash"] {
		t.Fatalf("the node restarted on adoption: pod %s (revision %s) became %s (revision %s); StatefulSet update revision %s",
			before.UID, before.Labels["controller-revision-hash"], after.UID, after.Labels["controller-revision-hash"], s.Status.UpdateRevision)
	}
	if a, err := env.kube.CoreV1().Services(ns).Get(env.ctx, "ad-chain-node0", metav1.GetOptions{}); err != nil || metav1.GetControllerOf(a) == nil {
		t.Fatalf("the Service not adopted: %v", err)
	}
}

// TestCitaNodeRefusesADifferentExistingNode: an existing StatefulSet of
// the name whose images differ is not adopted and not changed; the
// CitaNode says what differs.
func TestCitaNodeRefusesADifferentExistingNode(t *testing.T) {
	need(t)
	ns := namespace(t, "e2e-citanode-conflict")
	n := deployCloudConfig(t, ns, "cf-chain", "cf-chain-node0") // v6.7.0 images: not the CitaNode's v6.7.4
	citaNodeInputs(t, ns, "cf-chain", "cf-chain-node0-x")       // the config is checked first: give one
	before, err := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, n.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := env.kube.CoreV1().ConfigMaps(ns).Get(env.ctx, "cf-chain-node0-x-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["config.toml"] = strings.ReplaceAll(cm.Data["config.toml"], "cf-chain-node0-x", "cf-chain-node0")
	if _, err := env.kube.CoreV1().ConfigMaps(ns).Update(env.ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustApply(t, citaNodeYAML(ns, n.name, "cf-chain", "  configMapRef: cf-chain-node0-x-config\n  account:\n    configMap: cf-chain-node0-x-account\n"))
	cn := waitCitaNode(t, ns, n.name, citav1.NodePhaseError)
	c := apimeta.FindStatusCondition(cn.Status.Conditions, citav1.NodeConditionReady)
	if c == nil || c.Reason != citanode.ReasonAdoptionConflict || !strings.Contains(c.Message, "image") {
		t.Fatalf("Ready %+v", c)
	}
	after, err := env.kube.AppsV1().StatefulSets(ns).Get(env.ctx, n.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != before.Generation || metav1.GetControllerOf(after) != nil {
		t.Fatalf("the StatefulSet was changed: generation %d → %d, owner %+v", before.Generation, after.Generation, metav1.GetControllerOf(after))
	}
}
